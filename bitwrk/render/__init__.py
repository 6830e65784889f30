"""Rendering: job specs, tiling, cost classes, stitching and denoising (docs/architecture.md).

Nothing here imports ``bpy`` at load time. The entry points that run inside a Blender
process (``scene``, ``compose``) import it in the functions that need it.
"""
