"""Small model images shown at a size a person can judge, with clicks mapped back exactly.

Gradio 6.31's image maps a click to image pixels assuming the picture is never shown larger than
its natural size (ImagePreview caps its scale at 1), so a 64 px image enlarged by CSS reports
wrong pixels or none. A clickable image is therefore sent as a server-side copy enlarged by an
integer factor with the nearest neighbour, shown at its own size; a click at displayed pixel p
is model pixel p // factor. Results that are not clicked are enlarged by CSS (`.pixelated`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

MIN_SIDE = 256  # a result's long side on screen, at least
HEIGHT = MIN_SIDE + 24  # an image component's height: its picture keeps MIN_SIDE inside the frame's padding


def factor(size: tuple[int, int]) -> int:
    """The integer enlargement that brings an image of `size` (width, height) to >= MIN_SIDE px."""
    return max(1, math.ceil(MIN_SIDE / max(size)))


def enlarged(image) -> Image.Image | None:
    """A nearest-neighbour copy of `image` (PIL or array) enlarged by `factor`; None stays None."""
    if image is None:
        return None
    image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    k = factor(image.size)
    return image if k == 1 else image.resize((image.width * k, image.height * k), Image.NEAREST)


def model_pixel(index, size: tuple[int, int]) -> tuple[int, int]:
    """A click's pixel index on the enlarged copy of an image of `size` -> the model pixel under it."""
    k = factor(size)
    x, y = (int(v) // k for v in index)
    return min(max(x, 0), size[0] - 1), min(max(y, 0), size[1] - 1)
