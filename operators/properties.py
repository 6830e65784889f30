"""The scene's BitWrk settings (``scene.bitwrk``), edited in Render Properties → BitWrk."""

from __future__ import annotations

import bpy

from ..bitwrk.articles import COST_CLASSES

SAT_PER_UBTC = 100


def _sat(value: float, unit: str) -> int:
    return round(value * SAT_PER_UBTC) if unit == "UBTC" else round(value)


class BitwrkSettings(bpy.types.PropertyGroup):  # type: ignore[misc]
    exchange_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Exchange", default="http://127.0.0.1:8080", description="The exchange's URL")
    mode: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Mode", default="AUTO",
        items=[("STILL", "Still tiles", "Split each frame into tiles"),
               ("ANIMATION", "Animation frames", "One unit per frame"),
               ("AUTO", "Auto", "Tiles for stills, frames for animations")])
    price_unit: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Unit", default="SAT",
        items=[("SAT", "sat", "Satoshi"), ("UBTC", "µBTC", "Micro-bitcoin (100 sat)")])
    max_price: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Max price per unit", default=100.0, min=0.0)
    budget: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Budget", default=0.0, min=0.0,
        description="For the whole job, fees included (0: units × max price + fee room)")
    trusted_only: bpy.props.BoolProperty(name="Trusted sellers only")  # type: ignore[valid-type]
    accept_gpu: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Render on GPU sellers",
        description="GPU results are acceptable: buy GPU time (pixels match a CPU render "
                    "within the GPU tolerance, not exactly); refused for scenes using OSL")
    allow_local_sellers: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Allow local sellers",
        description="Trade with sellers on loopback or private-network addresses (a test "
                    "exchange, your own LAN); off, such seller endpoints are refused")
    lan_workers: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="LAN workers", description="Addresses of trusted workers, comma-separated")
    min_seller_finished: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Min seller trades", default=0, min=0, max=1_000_000,
        description="Trade only with sellers that finished at least this many trades on "
                    "the exchange (0: new sellers too); the exchange never matches others")
    exclude_sellers: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Exclude sellers",
        description="Seller addresses never to trade with, comma-separated (at most 32)")
    tiles: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Tiles", default=0, min=0, max=4096, description="Tiles per frame (0: auto)")
    cost_class: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Cost class", default="512M",
        items=[(c, c, f"Units up to {v} rays") for c, v in COST_CLASSES.items()])
    concurrency: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Units at once", default=4, min=1, max=256)
    allow_missing: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Allow missing files and scripts",
        description="Buy even if dependencies are missing or drivers need Python (sellers"
                    " never run scripts: such drivers render without their effect)")
    sell: bpy.props.BoolProperty(name="Also sell on this computer")  # type: ignore[valid-type]
    sell_device: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Device", default="CPU",
        items=[("CPU", "CPU", "Cycles on the CPU"),
               ("GPU", "GPU", "The first GPU backend Cycles finds (OptiX, CUDA, HIP, ...)"),
               ("OPTIX", "OptiX", "NVIDIA OptiX"), ("CUDA", "CUDA", "NVIDIA CUDA"),
               ("HIP", "HIP", "AMD HIP"), ("METAL", "Metal", "Apple Metal"),
               ("ONEAPI", "oneAPI", "Intel oneAPI")])
    sell_cores: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Cores", default=1, min=1, max=1024)
    sell_min_price: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Min price (sat)", default=10, min=0)
    sell_unsandboxed: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Sell without a sandbox (unsafe)", default=False,
        description="Only where no sandbox exists (macOS, Windows, Linux without bubblewrap):"
                    " buyers' scenes then run as your user and may read your files")
    sell_host: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Listen on", description="Address buyers reach this computer at (empty: its LAN"
                                      " address; 0.0.0.0: every interface)")
    sell_public_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Public URL", description="What buyers are told to connect to, when it differs"
                                       " (port forwarding, a proxy); empty: the address above")
    lan_host: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="LAN hub on", description="Interface the LAN hub for your workers listens on"
                                       " (empty: this computer's LAN address)")
    withdraw_to: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="To", description="The bitcoin address to pay out to")
    withdraw_amount: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Amount", default=0.0, min=0.0, description="How much to withdraw")
    withdraw_unit: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Unit", default="SAT",
        items=[("SAT", "sat", "Satoshi"), ("UBTC", "µBTC", "Micro-bitcoin (100 sat)")])

    def max_price_sat(self) -> int:
        return _sat(self.max_price, self.price_unit)

    def budget_sat(self) -> int:
        return _sat(self.budget, self.price_unit)

    def withdraw_amount_sat(self) -> int:
        return _sat(self.withdraw_amount, self.withdraw_unit)


def register() -> None:
    bpy.utils.register_class(BitwrkSettings)
    bpy.types.Scene.bitwrk = bpy.props.PointerProperty(type=BitwrkSettings)


def unregister() -> None:
    del bpy.types.Scene.bitwrk
    bpy.utils.unregister_class(BitwrkSettings)
