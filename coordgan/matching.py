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
from PIL import Image

from .correspondence import nearest_source_index


@dataclass
class PointMatches:
    """Where each point of image A lands in image B, and how sure the method is (every pipeline's
    `match_points` answers with one; its docstring says what confidence and heat map mean there)."""

    points: np.ndarray  # float32 (N, 2): the matches in image B (pixel indices x, y)
    confidence: np.ndarray  # float32 (N,) in [0, 1]: 1 = sure
    heatmaps: np.ndarray  # float32 (N, h, w): where each point could go, on a grid covering all of B; each sums to 1


def check_points(points, size: tuple[int, int], what: str = "image A") -> np.ndarray:
    """(N, 2) (x, y) pixel indices inside an image of size (H, W), else a ValueError that says the range."""
    h, w = size
    pts = np.asarray(points, np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all() or ((pts < 0) | (pts[:, :1] > w - 1) | (pts[:, 1:] > h - 1)).any():
        raise ValueError(f"points must lie inside {what}: 0 <= x <= {w - 1}, 0 <= y <= {h - 1} (pixel indices)")
    return pts


def cell_centres(index: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Flat indices of cells of an (h, w) grid laid over an (H, W) image -> float32 (N, 2) pixel
    indices (x, y) of the cells' centres."""
    (h, w), (height, width) = grid, size
    index = np.asarray(index)
    return np.stack([(index % w + 0.5) * width / w - 0.5, (index // w + 0.5) * height / h - 0.5], -1).astype(np.float32)


def image_size(image) -> tuple[int, int]:
    """(H, W) of a PIL image, an array [H, W, ...] or an image file (read from its header)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        with Image.open(image) as im:
            return im.size[1], im.size[0]
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return tuple(np.asarray(image).shape[:2])


def to_normalized(points: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Pixel indices in an (H, W) image -> [-1, 1] coordinates (align_corners=False)."""
    h, w = size
    return torch.from_numpy(np.stack([(points[:, 0] + 0.5) / w * 2 - 1, (points[:, 1] + 0.5) / h * 2 - 1], 1)).float()


def near_mass(heat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, h, w) heat maps -> (N,) mass in the 3 x 3 cells around each flat `index`."""
    pooled = F.avg_pool2d(heat[:, None], 3, stride=1, padding=1, count_include_pad=True)[:, 0] * 9
    return pooled.flatten(1).gather(1, index[:, None])[:, 0]


@torch.no_grad()
def match_points(pipe, image_a, image_b, points, temperature: float | None = None, resolution: int | None = None,
                 heatmaps: bool = True) -> PointMatches:
    """Each point of `image_a` -> the pixel of `image_b` with the nearest canonical coordinate
    (eq. 1), both correspondence maps read by the encoder; see `match_maps`. `resolution`: the
    size C_B is upsampled to (default: the generator's)."""
    size_a, size_b = image_size(image_a), image_size(image_b)
    pts = check_points(points, size_a)
    maps = pipe.encode([image_a, image_b]).correspondence_maps.float()  # (2, 2, h, w)
    return match_maps(maps[0], maps[1], pts, size_a, size_b, resolution or pipe.generator.resolution,
                      temperature, heatmaps)


@torch.no_grad()
def match_maps(map_a: torch.Tensor, map_b: torch.Tensor, points, size_a: tuple[int, int], size_b: tuple[int, int],
               resolution: int, temperature: float | None = None, heatmaps: bool = True,
               chunk: int = 4096) -> PointMatches:
    """Points (pixel indices of an (H, W) image A) -> B, given both correspondence maps (2, h, w).

    C_A is read at the point (bilinear), C_B is upsampled (bilinear) to `resolution` and the
    nearest coordinate wins: `correspondence.nearest_source_index`, the search of label
    propagation. The heat map is softmax_q(-||C_B(q) - C_A(p)||^2 / T) over B's map cells, the
    relaxed eq. (1), with T = the squared size of one map cell (2 / h)^2 by default (the training
    temperature, `correspondence.DEFAULT_TEMPERATURE`, is so sharp that every heat map would be
    one cell); confidence is its mass within one map cell of B's nearest cell. `heatmaps=False`
    leaves them out.
    """
    pts = check_points(points, size_a)
    map_a, map_b = map_a.float(), map_b.float()
    h, w = map_b.shape[-2:]
    r = resolution
    fine = F.interpolate(map_b[None], size=(r, r), mode="bilinear", align_corners=False)  # (1, 2, r, r)
    grid = to_normalized(pts, size_a).to(map_a.device)
    c_all = F.grid_sample(map_a[None], grid[None, None], mode="bilinear", align_corners=False)  # (1, 2, 1, N): C_A(p)
    j = nearest_source_index(fine, c_all)[0, 0].cpu().numpy() if len(pts) else np.zeros(0, np.int64)  # into r x r
    nearest_cell = nearest_source_index(map_b[None], c_all)[0, 0] if len(pts) else None  # into h x w
    coarse = map_b.flatten(1).T  # (h*w, 2)
    confidence, heat = [], []
    for start in range(0, len(pts), chunk):
        c = c_all[0, :, 0, start : start + chunk].T  # (n, 2)
        p = torch.softmax(-torch.cdist(c, coarse).square() / (temperature or (2 / h) ** 2), 1).reshape(-1, h, w)
        confidence.append(near_mass(p, nearest_cell[start : start + chunk]))
        if heatmaps:
            heat.append(p)
    confidence = torch.cat(confidence).cpu().numpy() if confidence else np.zeros(0)
    heat = torch.cat(heat).cpu().numpy() if heat else np.zeros((0, h, w), np.float32)
    return PointMatches(cell_centres(j, (r, r), size_b), confidence.astype(np.float32), heat)


@torch.no_grad()
def dense_flow(pipe, image_a, image_b, max_side: int = 256, resolution: int | None = None) -> np.ndarray:
    """For every pixel of `image_a` (at most `max_side` per side; larger images are sampled on a
    grid of that size), its match in `image_b`, as `match_points(pipe, image_a, image_b, ...)` gives
    it (every pipeline's convention): float32 (H', W', 2) pixel indices (x, y) of B, so that sampling
    B at the flow draws B in A's layout. Tiled (`correspondence.nearest_source_index`)."""
    (ha, wa), size_b = image_size(image_a), image_size(image_b)
    gh, gw = min(ha, max_side), min(wa, max_side)
    maps = pipe.encode([image_a, image_b]).correspondence_maps.float()
    r = resolution or pipe.generator.resolution
    query = F.interpolate(maps[:1], size=(gh, gw), mode="bilinear", align_corners=False)  # C_A at the grid's pixels
    source = F.interpolate(maps[1:], size=(r, r), mode="bilinear", align_corners=False)
    j = nearest_source_index(source, query)[0].cpu().numpy()  # (gh, gw) flat indices into B's r x r grid
    return cell_centres(j, (r, r), size_b)
