"""The wallet's deposit QR: a ``bitcoin:`` URI (BIP 21) drawn into a Blender image.

``qrcode`` (bundled as a wheel, pure Python, no PIL needed) gives the module matrix; the
image is filled straight from it, so nothing touches the disk.
"""

from __future__ import annotations

from typing import Any

IMAGE_NAME = "BitWrk deposit QR"
SCALE = 8  # pixels per module
PREVIEW_SCALE = 4  # pixels per module of the panel's icon, drawn 1:1 (see panel_scale)
ICON_UNIT = 20  # px of template_icon(scale=1.0) at UI scale 1
BORDER = 4  # quiet-zone modules (ISO/IEC 18004 asks for 4)


def bitcoin_uri(address: str, amount_sat: int | None = None) -> str:
    """``bitcoin:ADDRESS[?amount=BTC]`` (BIP 21; amount in BTC, no trailing zeros)."""
    if not amount_sat:
        return f"bitcoin:{address}"
    btc = f"{amount_sat // 100_000_000}.{amount_sat % 100_000_000:08d}".rstrip("0").rstrip(".")
    return f"bitcoin:{address}?amount={btc}"


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR modules of ``text`` (True = dark), quiet zone included, top row first."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=BORDER)
    code.add_data(text)
    code.make(fit=True)
    return [list(map(bool, row)) for row in code.get_matrix()]


def qr_pixels(matrix: list[list[bool]], scale: int = SCALE) -> tuple[int, list[float]]:
    """Side length and RGBA floats in Blender's order (bottom row first); dark = black."""
    size = len(matrix) * scale
    pixels: list[float] = []
    for row in reversed(matrix):
        line: list[float] = []
        for dark in row:
            v = 0.0 if dark else 1.0
            line += [v, v, v, 1.0] * scale
        pixels += line * scale
    return size, pixels


def qr_image(bpy: Any, uri: str, name: str = IMAGE_NAME) -> Any:
    """The Blender image ``name`` holding ``uri``'s QR code (created or replaced); its
    preview (what the panel draws) is set to the modules at :data:`PREVIEW_SCALE` exactly,
    not Blender's 128 px downscale of the image, so the drawn code stays crisp."""
    matrix = qr_matrix(uri)
    size, pixels = qr_pixels(matrix)
    image = bpy.data.images.get(name)
    if image is not None and tuple(image.size) != (size, size):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(name, size, size, alpha=False)
    image.colorspace_settings.name = "Non-Color"  # module values stay exactly 0 and 1
    image.pixels.foreach_set(pixels)
    image.update()
    image["bitwrk_uri"] = uri
    preview_size, preview_pixels = qr_pixels(matrix, PREVIEW_SCALE)
    preview = image.preview_ensure() or image.preview
    if preview is not None:
        preview.image_size = (preview_size, preview_size)
        preview.image_pixels_float.foreach_set(preview_pixels)
    return image


def panel_scale(image: Any) -> float:
    """``template_icon`` scale that draws the preview one image pixel per screen pixel."""
    return float(image.preview.image_size[0]) / ICON_UNIT
