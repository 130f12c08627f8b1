"""Resampling through an affine map, with pixel-index matrices (the centre of pixel (i, j) is (i, j)).

`resample(src, dst_to_src, size)` fills a `size` image by sampling `src` at `dst_to_src @ (x, y, 1)`.
Photos are antialiased when the map shrinks them: the source is first reduced by an integer
factor (box filter) so that 1.5-3 source pixels fall on an output pixel, then sampled bicubically
at up to 4x4 points per output pixel and averaged (supersampling). Label maps are sampled at the
nearest pixel, never blended.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

SUPERSAMPLE_MAX = 4
# Reflection padding (as fractions of the padded region's side): the blur's radius, the distance over
# which the mirror image turns into the blur, and the share of the mean colour reached at FLAT_RAMP.
BLUR, BLUR_RAMP, FLAT, FLAT_RAMP = 0.04, 0.03, 0.7, 0.25


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


def fit_similarity(src, dst) -> tuple[np.ndarray, float]:
    """(3x3 similarity taking points `src` (N, 2) nearest to `dst` in least squares (rotation,
    uniform scale, shift; no reflection), the RMS distance left)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    # z = a + ib with a = sum(s.d) / |s|^2, b = sum(s x d) / |s|^2: the complex-number least squares fit
    norm = max((s * s).sum(), 1e-12)
    a = (s * d).sum() / norm
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / norm
    m = np.array([[a, -b, 0.0], [b, a, 0.0], [0.0, 0.0, 1.0]])
    m[:2, 2] = md - m[:2, :2] @ ms
    residual = float(np.sqrt(((apply(m, src) - dst) ** 2).sum(1).mean()))
    return m, residual


def _pil_data(dst_to_src: np.ndarray) -> tuple:
    """PIL's AFFINE data works on continuous coordinates (pixel centres at +0.5)."""
    d = translation(0.5, 0.5) @ dst_to_src @ translation(-0.5, -0.5)
    return tuple(d[:2].ravel())


def _reflect_pad(inner: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """uint8 (h, w[, c]) padded by reflection, the mirror image blurring and fading towards the mean
    colour with the distance from the photo (FFHQ's padding, from its description)."""
    padded = np.pad(inner, pads + ((0, 0),) * (inner.ndim - 2), mode="symmetric")
    (top, bottom), (left, right) = pads
    h, w = padded.shape[:2]
    side = float(max(h, w))
    radius = max(1.0, BLUR * side)
    k = max(1, int(radius / 4))  # a blur this wide is as good from a k-times smaller copy, and k^2 cheaper
    image = Image.fromarray(padded)
    blurred = np.asarray(image.reduce(k).filter(ImageFilter.GaussianBlur(radius / k))
                         .resize(image.size, Image.BILINEAR))
    mean = inner.reshape(-1, *inner.shape[2:]).mean(0, dtype=np.float64).astype(np.float32)
    # Only the strips outside the photo change: above, below, then left and right of the photo's rows.
    strips = [(slice(0, top), slice(0, w)), (slice(h - bottom, h), slice(0, w)),
              (slice(top, h - bottom), slice(0, left)), (slice(top, h - bottom), slice(w - right, w))]
    for rows, cols in strips:
        ys, xs = np.arange(h)[rows], np.arange(w)[cols]
        if not ys.size or not xs.size:
            continue
        dy = np.maximum(top - ys, ys - (h - bottom - 1)).clip(0)
        dx = np.maximum(left - xs, xs - (w - right - 1)).clip(0)
        distance = np.hypot(dy[:, None], dx[None, :]).astype(np.float32)  # to the photo's rectangle
        blur_weight = np.clip(distance / (BLUR_RAMP * side), 0, 1)  # the mirror image dissolves into a blur...
        flat_weight = FLAT * np.clip(distance / (FLAT_RAMP * side), 0, 1)  # ...and mostly into the mean colour
        if padded.ndim == 3:
            blur_weight, flat_weight = blur_weight[..., None], flat_weight[..., None]
        part = padded[rows, cols].astype(np.float32)
        part += (blurred[rows, cols] - part) * blur_weight
        part += (mean - part) * flat_weight
        padded[rows, cols] = part.round().clip(0, 255)
    return padded


def _source_region(src: Image.Image, box, reduce: int, pad: str) -> np.ndarray:
    """uint8 (h, w[, c]): src over `box` (x0, y0, x1, y1; x0, y0 multiples of `reduce`, which
    divides the box's sides), box-filtered by `reduce`, padded with zeros or by reflection."""
    x0, y0, x1, y1 = box
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, src.width), min(y1, src.height)
    shape = ((y1 - y0) // reduce, (x1 - x0) // reduce) + ((len(src.getbands()),) if len(src.getbands()) > 1 else ())
    if ix0 >= ix1 or iy0 >= iy1:  # nothing of the photo: its mean colour
        fill = np.asarray(src).reshape(-1, *shape[2:]).mean(0).round() if pad == "reflect" else 0
        return np.broadcast_to(np.uint8(fill), shape).copy()
    inner = src.crop((ix0, iy0, ix1, iy1))
    if reduce > 1:  # index p -> (p + 0.5) / f - 0.5; a partial block at the photo's edge is averaged
        inner = inner.reduce(reduce)
    inner = np.asarray(inner)
    top, left = (iy0 - y0) // reduce, (ix0 - x0) // reduce
    pads = ((top, shape[0] - top - inner.shape[0]), (left, shape[1] - left - inner.shape[1]))
    if pads == ((0, 0), (0, 0)):
        return inner
    if pad == "reflect":
        return _reflect_pad(inner, pads)
    return np.pad(inner, pads + ((0, 0),) * (inner.ndim - 2))


def _box_mean(samples: np.ndarray, m: int) -> np.ndarray:
    """float32 mean of each m x m block of uint8 samples (m <= 16), by strided sums (10x numpy's mean)."""
    rows = samples[0::m].astype(np.uint16)
    for i in range(1, m):
        rows += samples[i::m]
    out = rows[:, 0::m].copy()
    for j in range(1, m):
        out += rows[:, j::m]
    return out.astype(np.float32) * np.float32(1 / (m * m))


def _bounds(src: Image.Image, a: np.ndarray, size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """The source box an output of `size` reads through `a`, with a margin, kept within 4 photo sizes."""
    w, h = size
    corners = apply(a, [(-0.5, -0.5), (w - 0.5, -0.5), (-0.5, h - 0.5), (w - 0.5, h - 0.5)])
    x0, y0 = np.floor(corners.min(0) - margin).astype(int)
    x1, y1 = np.ceil(corners.max(0) + margin).astype(int)
    x0, x1 = (int(np.clip(v, -4 * src.width, 5 * src.width)) for v in (x0, x1))
    y0, y1 = (int(np.clip(v, -4 * src.height, 5 * src.height)) for v in (y0, y1))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def resample(src: Image.Image, dst_to_src: np.ndarray, size: tuple[int, int], *, labels: bool = False,
             pad: str = "zero", fast: bool = False, exact: bool = True) -> Image.Image:
    """An image of `size` (w, h) whose pixel q shows src at dst_to_src @ q (pixel indices).

    labels: nearest neighbour (for label maps). fast: one bilinear 8-bit sample per pixel (for the
    detector's turned copies: a -0.5 grey-level bias, aliased when shrinking). pad: "zero" or
    "reflect" (a mirror image that blurs and fades into the photo's mean colour, as FFHQ pads crops
    that leave the photo). exact: see `resample_array`.
    """
    a = np.asarray(dst_to_src, np.float64)
    if labels or fast:
        x0, y0, x1, y1 = _bounds(src, a, size, 3)
        region = src.crop((x0, y0, x1, y1))  # zeros outside
        data = _pil_data(translation(-x0, -y0) @ a)
        return region.transform(size, Image.AFFINE, data, resample=Image.NEAREST if labels else Image.BILINEAR)
    return Image.fromarray(resample_array(src, a, size, pad=pad, exact=exact).round().clip(0, 255).astype(np.uint8))


def resample_array(src: Image.Image, dst_to_src: np.ndarray, size: tuple[int, int], *, pad: str = "zero",
                   exact: bool = True) -> np.ndarray:
    """`resample` of a photo, as float32 (h, w[, c]) before rounding. exact=False: where the map does
    not shrink, one 8-bit bicubic call with PIL's round-down added back as +0.5 (+-0.5 error, no bias)
    instead of one float call per channel (~3x faster, for large pastes)."""
    w, h = size
    a = np.asarray(dst_to_src, np.float64)
    scale = math.sqrt(abs(np.linalg.det(a[:2, :2])))  # source pixels per output pixel
    f = max(1, int(scale / 1.5))  # box-filter the source first, leaving 1.5-3 source pixels per output pixel
    x0, y0, x1, y1 = _bounds(src, a, size, 2 * scale + 3)
    x0, y0 = x0 // f * f, y0 // f * f
    x1, y1 = x0 + -(-(x1 - x0) // f) * f, y0 + -(-(y1 - y0) // f) * f
    region = _source_region(src, (x0, y0, x1, y1), f, pad)
    a = translation(-0.5, -0.5) @ scaling(1 / f) @ translation(0.5 - x0, 0.5 - y0) @ a
    m = max(1, min(SUPERSAMPLE_MAX, math.ceil(scale / f - 0.2)))  # up to 1.2x: bicubic alone
    # Supersampled output index z -> final index (z + 0.5) / m - 0.5.
    data = _pil_data(a @ translation(-0.5, -0.5) @ scaling(1 / m) @ translation(0.5, 0.5))
    if m > 1 or not exact:
        # 8-bit bicubic samples (PIL rounds them down: their mean is 0.5 low, added back), averaged
        # in float over m x m: one call instead of one per channel.
        samples = np.asarray(Image.fromarray(region).transform((w * m, h * m), Image.AFFINE, data,
                                                              resample=Image.BICUBIC))
        return _box_mean(samples, m) + np.float32(0.5)
    # Each channel in float (mode F): exact, where an 8-bit result would be 0.5 low.
    channels = np.atleast_3d(region).transpose(2, 0, 1).astype(np.float32)
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c)).transform(
        (w, h), Image.AFFINE, data, resample=Image.BICUBIC)) for c in channels], -1)
    return out if region.ndim == 3 else out[..., 0]
