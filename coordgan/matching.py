"""Where a point of one image lands in another, through the correspondence maps (eq. 1), and how
sure the model is.

Points are (x, y) pixel indices: the centre of pixel (i, j) is (i, j), so an image of W x H
pixels spans [-0.5, W - 0.5] x [-0.5, H - 0.5]; clicks and `.npy` flows use the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .correspondence import nearest_source_index


@dataclass
class PointMatches:
    points: np.ndarray  # float32 (N, 2): the matches in image B (pixel indices x, y)
    confidence: np.ndarray  # float32 (N,) in [0, 1]: the heat map's mass within one cell of the match
    heatmaps: np.ndarray  # float32 (N, h, w): where each point could go in B, sums to 1 (covers all of B)


def check_points(points, size: tuple[int, int], what: str = "image A") -> np.ndarray:
    """(N, 2) (x, y) pixel indices inside an image of size (H, W), else a ValueError that says the range."""
    h, w = size
    pts = np.asarray(points, np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all() or ((pts < 0) | (pts[:, :1] > w - 1) | (pts[:, 1:] > h - 1)).any():
        raise ValueError(f"points must lie inside {what}: 0 <= x <= {w - 1}, 0 <= y <= {h - 1} (pixel indices)")
    return pts


def to_normalized(points: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Pixel indices in an (H, W) image -> [-1, 1] coordinates (align_corners=False)."""
    h, w = size
    return torch.from_numpy(np.stack([(points[:, 0] + 0.5) / w * 2 - 1, (points[:, 1] + 0.5) / h * 2 - 1], 1)).float()


def near_mass(heat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, h, w) heat maps -> (N,) mass in the 3 x 3 cells around each flat `index`."""
    pooled = F.avg_pool2d(heat[:, None], 3, stride=1, padding=1, count_include_pad=True)[:, 0] * 9
    return pooled.flatten(1).gather(1, index[:, None])[:, 0]


def _image_size(image) -> tuple[int, int]:
    if hasattr(image, "size") and not isinstance(image, np.ndarray):
        return image.size[1], image.size[0]
    return np.asarray(image).shape[:2]


@torch.no_grad()
def match_points(pipe, image_a, image_b, points, temperature: float | None = None, resolution: int | None = None,
                 heatmaps: bool = True) -> PointMatches:
    """Each point of `image_a` -> the pixel of `image_b` with the nearest canonical coordinate
    (eq. 1), both correspondence maps read by the encoder; see `match_maps`. `resolution`: the
    size C_B is upsampled to (default: the generator's)."""
    size_a, size_b = _image_size(image_a), _image_size(image_b)
    pts = check_points(points, size_a)
    maps = pipe.encode([image_a, image_b]).correspondence_maps.float()  # (2, 2, h, w)
    return match_maps(maps[0], maps[1], pts, size_a, size_b, resolution or pipe.generator.resolution, temperature, heatmaps)


@torch.no_grad()
def match_maps(map_a: torch.Tensor, map_b: torch.Tensor, points, size_a: tuple[int, int], size_b: tuple[int, int], resolution: int,
               temperature: float | None = None, heatmaps: bool = True, chunk: int = 4096) -> PointMatches:
    """Points (pixel indices of an (H, W) image A) -> B, given both correspondence maps (2, h, w).

    C_A is read at the point (bilinear), C_B is upsampled (bilinear) to `resolution` and the
    nearest coordinate wins, as label propagation does. The heat map is
    softmax_q(-||C_B(q) - C_A(p)||^2 / T) over B's map cells, the relaxed eq. (1), with T = the
    squared size of one map cell (2 / h)^2 by default (the training temperature,
    `correspondence.DEFAULT_TEMPERATURE`, is so sharp that every heat map would be one cell);
    confidence is its mass within one map cell of the match. `heatmaps=False` leaves them out.
    """
    pts = check_points(points, size_a)
    map_a, map_b = map_a.float(), map_b.float()
    h, w = map_b.shape[-2:]
    r = resolution
    fine = F.interpolate(map_b[None], size=(r, r), mode="bilinear", align_corners=False)[0].flatten(1).T  # (r*r, 2)
    coarse = map_b.flatten(1).T  # (h*w, 2)
    grid = to_normalized(pts, size_a).to(map_a.device)
    c_all = F.grid_sample(map_a[None], grid[None, None], mode="bilinear", align_corners=False)[0, :, 0].T  # (N, 2)
    j, confidence, heat = [], [], []
    for c in c_all.split(chunk):
        j.append(torch.cdist(c, fine).argmin(1))
        d2 = torch.cdist(c, coarse).square()
        p = torch.softmax(-d2 / (temperature or (2 / h) ** 2), 1).reshape(-1, h, w)
        confidence.append(near_mass(p, d2.argmin(1)))
        if heatmaps:
            heat.append(p)
    j = torch.cat(j).cpu().numpy() if j else np.zeros(0, np.int64)
    hb, wb = size_b
    matched = np.stack([(j % r + 0.5) * wb / r - 0.5, (j // r + 0.5) * hb / r - 0.5], 1).astype(np.float32)
    confidence = torch.cat(confidence).cpu().numpy() if confidence else np.zeros(0)
    heat = torch.cat(heat).cpu().numpy() if heat else np.zeros((0, h, w), np.float32)
    return PointMatches(matched, confidence.astype(np.float32), heat)


@torch.no_grad()
def dense_flow(pipe, image_a, image_b, max_side: int = 256, resolution: int | None = None) -> np.ndarray:
    """For every pixel of `image_b` (at most `max_side` per side; larger images are sampled on a
    grid of that size), its match in `image_a`, as `match_points` from B to A would give it:
    float32 (H', W', 2) pixel indices (x, y) of A. Tiled (`correspondence.nearest_source_index`)."""
    size_a, (hb, wb) = _image_size(image_a), _image_size(image_b)
    gh, gw = min(hb, max_side), min(wb, max_side)
    maps = pipe.encode([image_a, image_b]).correspondence_maps.float()
    r = resolution or pipe.generator.resolution
    source = F.interpolate(maps[:1], size=(r, r), mode="bilinear", align_corners=False)
    target = F.interpolate(maps[1:], size=(gh, gw), mode="bilinear", align_corners=False)  # C_B at the grid's pixel centres
    j = nearest_source_index(source, target)[0].cpu().numpy()  # (gh, gw) flat indices into A's r x r grid
    ha, wa = size_a
    return np.stack([(j % r + 0.5) * wa / r - 0.5, (j // r + 0.5) * ha / r - 0.5], -1).astype(np.float32)
