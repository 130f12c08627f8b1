"""Where a point of the input map lands in the exemplar (Figure 8), with the softmax row of
eq. (4) as a heat map, and the dense flow of the warp.

Points are (x, y) pixel indices: the centre of pixel (i, j) is (i, j), so an image of W x H
pixels spans [-0.5, W - 0.5] x [-0.5, H - 0.5]; clicks and `.npy` flows use the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .correspondence import best_match


# Copied from coordgan.matching.PointMatches
@dataclass
class PointMatches:
    """Where each point of image A lands in image B, and how sure the method is (every pipeline's
    `match_points` answers with one; its docstring says what confidence and heat map mean there)."""

    points: np.ndarray  # float32 (N, 2): the matches in image B (pixel indices x, y)
    confidence: np.ndarray  # float32 (N,) in [0, 1]: 1 = sure
    heatmaps: np.ndarray  # float32 (N, h, w): where each point could go, on a grid covering all of B; each sums to 1


# Copied from coordgan.matching.check_points
def check_points(points, size: tuple[int, int], what: str = "image A") -> np.ndarray:
    """(N, 2) (x, y) pixel indices inside an image of size (H, W), else a ValueError that says the range."""
    h, w = size
    pts = np.asarray(points, np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all() or ((pts < 0) | (pts[:, :1] > w - 1) | (pts[:, 1:] > h - 1)).any():
        raise ValueError(f"points must lie inside {what}: 0 <= x <= {w - 1}, 0 <= y <= {h - 1} (pixel indices)")
    return pts


# Copied from coordgan.matching.cell_centres
def cell_centres(index: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Flat indices of cells of an (h, w) grid laid over an (H, W) image -> float32 (N, 2) pixel
    indices (x, y) of the cells' centres."""
    (h, w), (height, width) = grid, size
    index = np.asarray(index)
    return np.stack([(index % w + 0.5) * width / w - 0.5, (index // w + 0.5) * height / h - 0.5], -1).astype(np.float32)


# Copied from coordgan.matching.near_mass
def near_mass(heat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, h, w) heat maps -> (N,) mass in the 3 x 3 cells around each flat `index`."""
    pooled = F.avg_pool2d(heat[:, None], 3, stride=1, padding=1, count_include_pad=True)[:, 0] * 9
    return pooled.flatten(1).gather(1, index[:, None])[:, 0]


@torch.inference_mode()
def match_points(pipe, input_map, exemplar, points, exemplar_map=None, alpha: float = 100.0, heatmaps: bool = True,
                 chunk: int = 1024) -> PointMatches:
    """Points (x, y) of the input map -> the exemplar cell of highest M(u, v) (eq. 3) at the
    correspondence resolution f = R/4, returned as that cell's centre in the exemplar's pixels.

    The heat map is the point's row of softmax_v(alpha M(u, v)), the weights with which eq. (4)
    warps the exemplar to it (alpha = 100 as in the paper); confidence is that row's mass within
    one cell of the match.
    """
    x, (h, w) = pipe.encode_input_map(input_map)
    pts = check_points(points, (h, w), "the input map")
    y, (exemplar_size,) = pipe.preprocess([exemplar])
    y_map = pipe.encode_input_map(exemplar_map)[0] if (pipe.needs_exemplar_map and exemplar_map is not None) else None
    if pipe.needs_exemplar_map and y_map is None:
        raise ValueError("this model also needs the exemplar's own map: pass exemplar_map= (same kind as input_map)")
    net = pipe.correspondence_network
    _, _, query, key = net.correlation(x, y, y_map)  # (1, f*f, C) each; the exemplar's side cached per exemplar
    f = net.feature_resolution
    col = np.clip(np.floor((pts[:, 0] + 0.5) * f / w), 0, f - 1).astype(np.int64)
    row = np.clip(np.floor((pts[:, 1] + 0.5) * f / h), 0, f - 1).astype(np.int64)
    index = torch.from_numpy(row * f + col).to(query.device)
    match = best_match(query[:, index], key)[0] if len(index) else index  # (N,) exemplar cells
    confidence, heat = [], []
    for start in range(0, len(index), chunk):
        with torch.autocast(query.device.type, enabled=False):  # the alpha = 100 softmax in fp32 under any precision
            logits = alpha * query[0, index[start : start + chunk]].float() @ key[0].float().T
            p = torch.softmax(logits, -1).reshape(-1, f, f)
        confidence.append(near_mass(p, match[start : start + chunk]))
        if heatmaps:
            heat.append(p)
    matched = cell_centres(match.cpu().numpy(), (f, f), exemplar_size)
    confidence = torch.cat(confidence).cpu().numpy().astype(np.float32) if confidence else np.zeros(0, np.float32)
    heat = torch.cat(heat).cpu().numpy() if heat else np.zeros((0, f, f), np.float32)
    return PointMatches(matched, confidence, heat)


def dense_flow(pipe, input_map, exemplar, exemplar_map=None) -> np.ndarray:
    """For every cell of the input map at the correspondence resolution (f x f), its best match in
    the exemplar: float32 (f, f, 2) pixel indices (x, y) of the exemplar; cell (i, j) covers input
    pixels [j W / f, (j + 1) W / f) x [i H / f, (i + 1) H / f)."""
    _, (h, w) = pipe.encode_input_map(input_map)
    f = pipe.correspondence_network.feature_resolution
    ys, xs = (np.arange(f) + 0.5) * h / f - 0.5, (np.arange(f) + 0.5) * w / f - 0.5
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    return match_points(pipe, input_map, exemplar, grid, exemplar_map, heatmaps=False).points.reshape(f, f, 2)
