"""Resampling through an affine map, with pixel-index matrices (the centre of pixel (i, j) is (i, j)).

`resample(src, dst_to_src, size)` fills a `size` image by sampling `src` at `dst_to_src @ (x, y, 1)`.
Photos are antialiased when the map shrinks them: the source is first reduced by an integer
factor (box filter) so that at most ~2 source pixels fall on an output pixel, then sampled
bicubically at up to 4x4 points per output pixel and averaged (supersampling). Label maps are
sampled at the nearest pixel, never blended.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

SUPERSAMPLE_MAX = 4


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def scaling(s: float) -> np.ndarray:
    return np.diag([s, s, 1.0])


def rotation(degrees: float, center=(0.0, 0.0)) -> np.ndarray:
    """3x3 rotation by `degrees` about `center`, counter-clockwise as seen on screen (y down)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    r = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    return translation(*center) @ r @ translation(-center[0], -center[1])


def apply(matrix: np.ndarray, points) -> np.ndarray:
    """Points (..., 2) through a 3x3 (or 2x3) affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _pil_data(dst_to_src: np.ndarray) -> tuple:
    """PIL's AFFINE data works on continuous coordinates (pixel centres at +0.5)."""
    d = translation(0.5, 0.5) @ dst_to_src @ translation(-0.5, -0.5)
    return tuple(d[:2].ravel())


def _pad_photo(src: Image.Image, box: tuple[int, int, int, int], mode: str) -> Image.Image:
    """src cropped to `box` (may leave the image): zeros, or reflected with a blur fading in (FFHQ)."""
    x0, y0, x1, y1 = box
    w, h = src.size
    if mode == "zero" or (x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h):
        return src.crop(box)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix0 >= ix1 or iy0 >= iy1:  # nothing of the photo: its mean colour
        colour = tuple(int(v) for v in np.asarray(src).reshape(-1, len(src.getbands())).mean(0))
        return Image.new(src.mode, (x1 - x0, y1 - y0), colour)
    inner = np.asarray(src.crop((ix0, iy0, ix1, iy1)), np.float32)
    pads = ((iy0 - y0, y1 - iy1), (ix0 - x0, x1 - ix1)) + ((0, 0),) * (inner.ndim - 2)
    padded = np.pad(inner, pads, mode="symmetric")
    # Distance (px) of each pixel outside the photo to the photo's rectangle.
    ys, xs = np.arange(y0, y1), np.arange(x0, x1)
    dy = np.maximum(iy0 - ys, ys - (iy1 - 1)).clip(0)
    dx = np.maximum(ix0 - xs, xs - (ix1 - 1)).clip(0)
    distance = np.hypot(dy[:, None], dx[None, :]).astype(np.float32)
    side = float(max(x1 - x0, y1 - y0))
    blur_weight = np.clip(distance / (0.05 * side), 0, 1)  # the mirror image dissolves into a blur...
    flat_weight = 0.5 * np.clip(distance / (0.3 * side), 0, 1)  # ...and half-way into the mean colour
    if padded.ndim == 3:
        blur_weight, flat_weight = blur_weight[..., None], flat_weight[..., None]
    blurred = np.asarray(Image.fromarray(padded.round().astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(max(1.0, 0.02 * side))), np.float32)
    out = padded + (blurred - padded) * blur_weight
    out += (inner.reshape(-1, *inner.shape[2:]).mean(0) - out) * flat_weight
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def resample(src: Image.Image, dst_to_src: np.ndarray, size: tuple[int, int], *, labels: bool = False,
             pad: str = "zero", fast: bool = False) -> Image.Image:
    """An image of `size` (w, h) whose pixel q shows src at dst_to_src @ q (pixel indices).

    labels: nearest neighbour (for label maps). fast: one bilinear 8-bit sample per pixel (for the
    detector's turned copies: 5x faster, a -0.5 grey-level bias, aliased when shrinking). pad: "zero" or "reflect" (a mirror image that
    blurs and fades into the photo's mean colour, as FFHQ pads crops that leave the photo).
    """
    w, h = size
    a = np.asarray(dst_to_src, np.float64)
    scale = math.sqrt(abs(np.linalg.det(a[:2, :2])))  # source pixels per output pixel
    corners = apply(a, [(-0.5, -0.5), (w - 0.5, -0.5), (-0.5, h - 0.5), (w - 0.5, h - 0.5)])
    margin = 2 * scale + 3
    x0, y0 = np.floor(corners.min(0) - margin).astype(int)
    x1, y1 = np.ceil(corners.max(0) + margin).astype(int)
    x0, y0 = max(x0, -4 * src.width), max(y0, -4 * src.height)  # a crop far off the photo stays bounded
    x1, y1 = min(x1, 5 * src.width), min(y1, 5 * src.height)
    region = _pad_photo(src, (x0, y0, x1, y1), "zero" if labels else pad)
    a = translation(-x0, -y0) @ a
    if labels or fast:
        return region.transform((w, h), Image.AFFINE, _pil_data(a), resample=Image.NEAREST if labels else Image.BILINEAR)
    # Each channel in float (mode F): PIL rounds 8-bit bicubic results down, a -0.5 bias per warp.
    channels = [Image.fromarray(c, "F") for c in np.atleast_3d(np.asarray(region, np.float32)).transpose(2, 0, 1)]
    reduce = max(1, int(scale // 2))
    if reduce > 1:  # box-filter the source first: index p -> (p + 0.5) / f - 0.5
        channels = [c.reduce(reduce) for c in channels]
        a = translation(-0.5, -0.5) @ scaling(1 / reduce) @ translation(0.5, 0.5) @ a
    m = max(1, min(SUPERSAMPLE_MAX, math.ceil(scale / reduce - 0.2)))  # up to 1.2x: bicubic alone
    # Supersampled output index z -> final index (z + 0.5) / m - 0.5.
    a = a @ translation(-0.5, -0.5) @ scaling(1 / m) @ translation(0.5, 0.5)
    data = _pil_data(a)
    out = [c.transform((w * m, h * m), Image.AFFINE, data, resample=Image.BICUBIC) for c in channels]
    if m > 1:
        out = [c.reduce(m) for c in out]
    array = np.stack([np.asarray(c) for c in out], -1).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(array if len(out) > 1 else array[..., 0], region.mode)
