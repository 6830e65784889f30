"""Selling render time: worker processes under bpy and the pool that manages them."""
