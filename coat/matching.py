"""Where a point of the content image lands in the style image (eq. 1), how sure COAT is (eq. 2),
and the dense flow of the finest scale.

Points are (x, y) pixel indices: the centre of pixel (i, j) is (i, j), so an image of W x H
pixels spans [-0.5, W - 0.5] x [-0.5, H - 0.5]; clicks and `.npy` flows use the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .correspondence import flatten_normalized, match_statistics

HEAT_TEMPERATURE = 0.05  # of softmax(S / T) over the style cells: a display choice, not the paper's


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


# Copied from coordgan.matching.image_size
def image_size(image) -> tuple[int, int]:
    """(H, W) of a PIL image, an array [H, W, ...] or an image file (read from its header)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        with Image.open(image) as im:
            return im.size[1], im.size[0]
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return tuple(np.asarray(image).shape[:2])


@torch.inference_mode()
def match_points(pipe, image_a, image_b, points, scale: int = 0, heatmaps: bool = True,
                 chunk: int = 1024) -> PointMatches:
    """Points (x, y) of image A -> the cell of B with the highest S (eq. 1) at feature scale
    `scale` (0 = finest), returned as that cell's centre in B's pixels; confidence is Q (eq. 2)
    of the pair, 1 for a mutual nearest neighbour (a match that eq. 3 would swap); the heat map
    is softmax_j(S_ij / HEAT_TEMPERATURE) over B's cells.
    """
    xy, ((h, w), size_b) = pipe.preprocess([image_a, image_b])
    pts = check_points(points, (h, w))
    n_scales = len(pipe.encoder.config.feature_strides)
    if not 0 <= scale < n_scales:
        raise ValueError(f"scale must be in 0..{n_scales - 1}, got {scale}")
    keys = pipe.encoder(xy, with_matching=True)[1][scale]
    stats = match_statistics(keys[:1], keys[1:])
    fh, fw = keys.shape[-2:]
    col = np.clip(np.floor((pts[:, 0] + 0.5) * fw / w), 0, fw - 1).astype(np.int64)
    row = np.clip(np.floor((pts[:, 1] + 0.5) * fh / h), 0, fh - 1).astype(np.int64)
    index = torch.from_numpy(row * fw + col).to(keys.device)
    j = stats.row_argmax[0, index].cpu().numpy()
    confidence = stats.confidence[0, index].float().cpu().numpy().astype(np.float32)
    heat = []
    if heatmaps:
        a, b = flatten_normalized(keys[:1])[0], flatten_normalized(keys[1:])[0]
        heat = [torch.softmax(a[i] @ b.T / HEAT_TEMPERATURE, -1).reshape(-1, fh, fw) for i in index.split(chunk)]
    matched = cell_centres(j, (fh, fw), size_b)
    heat = torch.cat(heat).float().cpu().numpy() if heat else np.zeros((0, fh, fw), np.float32)
    return PointMatches(matched, confidence, heat)


def dense_flow(pipe, image_a, image_b, scale: int = 0) -> np.ndarray:
    """For every cell of image A's feature map at `scale` (h x w), its best match in B (eq. 1):
    float32 (h, w, 2) pixel indices (x, y) of B; cell (i, j) covers A's pixels
    [j W / w, (j + 1) W / w) x [i H / h, (i + 1) H / h)."""
    h, w = image_size(image_a)
    stride = pipe.encoder.config.feature_strides[scale]
    fh = fw = pipe.resolution // stride
    ys, xs = (np.arange(fh) + 0.5) * h / fh - 0.5, (np.arange(fw) + 0.5) * w / fw - 0.5
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    return match_points(pipe, image_a, image_b, grid, scale, heatmaps=False).points.reshape(fh, fw, 2)
