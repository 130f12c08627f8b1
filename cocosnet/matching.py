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
from PIL import Image

from .correspondence import best_match


@dataclass
class PointMatches:
    points: np.ndarray  # float32 (N, 2): the matches in the exemplar (pixel indices x, y)
    confidence: np.ndarray  # float32 (N,) in [0, 1]: the softmax row's mass within one cell of the match
    heatmaps: np.ndarray  # float32 (N, f, f): softmax_v(alpha M(u, v)) over the exemplar cells, sums to 1


def _exemplar_size(exemplar) -> tuple[int, int]:
    if isinstance(exemplar, (str, bytes)) or hasattr(exemplar, "__fspath__"):
        with Image.open(exemplar) as im:
            return im.size[1], im.size[0]
    if isinstance(exemplar, Image.Image):
        return exemplar.size[1], exemplar.size[0]
    return np.asarray(exemplar).shape[:2]


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
    pts = np.asarray(points, np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all() or ((pts < 0) | (pts[:, :1] > w - 1) | (pts[:, 1:] > h - 1)).any():
        raise ValueError(f"points must lie inside the input map: 0 <= x <= {w - 1}, 0 <= y <= {h - 1} (pixel indices)")
    ex_h, ex_w = _exemplar_size(exemplar)
    y = pipe.encode_exemplar(exemplar)
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
        p = torch.softmax(alpha * query[0, index[start : start + chunk]].float() @ key[0].float().T, -1).reshape(-1, f, f)
        pooled = F.avg_pool2d(p[:, None], 3, stride=1, padding=1)[:, 0] * 9
        confidence.append(pooled.flatten(1).gather(1, match[start : start + chunk, None])[:, 0])
        if heatmaps:
            heat.append(p)
    m = match.cpu().numpy()
    matched = np.stack([(m % f + 0.5) * ex_w / f - 0.5, (m // f + 0.5) * ex_h / f - 0.5], 1).astype(np.float32)
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
