"""Integer rasterisation for the pose skeleton: filled discs, limb ellipses as integer polygons,
convex polygon fill, 0.4 / 0.6 blending. These follow the conventions of the authors' renderer
(midpoint circles, ellipse polygons sampled every whole degree, 16.16 fixed-point edge walks) so
that encodings.render_pose agrees with their channels; pure numpy, no OpenCV.
"""

from __future__ import annotations

import math

import numpy as np


def fill_disc(canvas: np.ndarray, cx: int, cy: int, radius: int, color) -> None:
    """A filled midpoint circle of integer `radius` around (cx, cy), clipped to the canvas."""
    h, w = canvas.shape[:2]
    dx, dy, err = radius, 0, 0
    while dx >= dy:
        for half, rows in ((dx, (cy - dy, cy + dy)), (dy, (cy - dx, cy + dx))):
            x0, x1 = max(cx - half, 0), min(cx + half, w - 1)
            for row in rows:
                if 0 <= row < h and x0 <= x1:
                    canvas[row, x0 : x1 + 1] = color
        dy += 1
        err += 2 * dy - 1
        if err > 0:
            err -= 2 * dx - 1
            dx -= 1


def _sin_deg(degrees: np.ndarray) -> np.ndarray:
    """sin of whole degrees in float32 (a degree table, as the renderer uses)."""
    return np.sin(np.deg2rad(np.asarray(degrees, np.float64))).astype(np.float32).astype(np.float64)


def limb_polygon(p0, p1, half_width: int) -> np.ndarray:
    """The integer polygon (N, 2) x, y of the ellipse drawn for a limb from p0 to p1 (x, y): centred
    on the truncated midpoint, semi-axes (int(length / 2), half_width), rotated by the truncated
    angle in degrees, sampled every degree, rounded half to even, repeats dropped."""
    (x0, y0), (x1, y1) = p0, p1
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    a = int(math.hypot(x0 - x1, y0 - y1) / 2)
    angle = int(math.degrees(math.atan2(y0 - y1, x0 - x1))) % 360
    cos_r, sin_r = _sin_deg(450 - angle), _sin_deg(angle)
    t = np.arange(0, 361)
    ex, ey = a * _sin_deg(450 - t), half_width * _sin_deg(t)
    pts = np.rint(np.stack([cx + ex * cos_r - ey * sin_r, cy + ex * sin_r + ey * cos_r], 1)).astype(np.int64)
    keep = np.ones(len(pts), bool)
    keep[1:] = (pts[1:] != pts[:-1]).any(1)
    pts = pts[keep]
    return pts if len(pts) > 1 else np.concatenate([pts, [[cx, cy]]])


def fill_convex(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixels of a convex integer polygon: its vertices, and on each row the span
    between its left and right edge (16.16 fixed-point edge walk, ends rounded)."""
    h, w = shape
    out = np.zeros(shape, bool)
    px, py = polygon[:, 0], polygon[:, 1]
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    out[py[inside], px[inside]] = True
    n = len(polygon)
    if n < 3 or px.max() < 0 or py.max() < 0 or px.min() >= w or py.min() >= h:
        return out
    one, half = 1 << 16, 1 << 15
    top = int(np.argmin(py))
    ymax = min(int(py.max()), h - 1)
    # two walkers around the polygon from the top vertex: forwards (+1) and backwards (-1)
    walkers = [dict(idx=top, step=1, x=-one, dx=0, end=int(py[top])),
               dict(idx=top, step=n - 1, x=-one, dx=0, end=int(py[top]))]
    budget = n
    y = int(py[top])
    while True:
        for wk in walkers:
            if y >= wk["end"]:
                i0 = wk["idx"]
                i1 = (i0 + wk["step"]) % n
                while budget > 0:
                    budget -= 1
                    if py[i1] > y:
                        dy = int(py[i1]) - y
                        wk.update(idx=i1, end=int(py[i1]), x=int(px[i0]) << 16,
                                  dx=_div_toward_zero((int(px[i1]) - int(px[i0])) * 2 * one + dy, 2 * dy))
                        break
                    i0, i1 = i1, (i1 + wk["step"]) % n
                else:
                    budget = -1
        if budget < 0:
            break
        if y >= 0:
            left, right = sorted((walkers[0]["x"], walkers[1]["x"]))
            x0, x1 = (left + half) >> 16, (right + half) >> 16
            if x1 >= 0 and x0 < w:
                out[y, max(x0, 0) : min(x1, w - 1) + 1] = True
        for wk in walkers:
            wk["x"] += wk["dx"]
        y += 1
        if y > ymax:
            break
    return out


def _div_toward_zero(a: int, b: int) -> int:
    """Integer division rounding toward zero (C semantics), b > 0."""
    return a // b if a >= 0 else -((-a) // b)


def blend(canvas: np.ndarray, where: np.ndarray, color) -> None:
    """canvas = 0.4 canvas + 0.6 (canvas with `color` at `where`), rounded to uint8 (in place)."""
    old = canvas[where].astype(np.float32)
    new = np.rint(np.float32(0.4) * old + np.float32(0.6) * np.asarray(color, np.float32))
    canvas[where] = np.clip(new, 0, 255).astype(np.uint8)


__all__ = ["blend", "fill_convex", "fill_disc", "limb_polygon"]
