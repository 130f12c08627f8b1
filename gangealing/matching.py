"""Where a point of one image lands in another through congealed space (section 4.2), how sure
the congealing is, and the dense flow between two images.

Points are (x, y) pixel indices: the centre of pixel (i, j) is (i, j), so an image of W x H
pixels spans [-0.5, W - 0.5] x [-0.5, H - 0.5]; clicks and `.npy` flows use the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .frames import crop_frame, from_model_pixels, to_model_pixels
from .transformer import identity_grid, normalized_to_pixels


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


# Copied from coordgan.matching.image_size
def image_size(image) -> tuple[int, int]:
    """(H, W) of a PIL image, an array [H, W, ...] or an image file (read from its header)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        with Image.open(image) as im:
            return im.size[1], im.size[0]
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return tuple(np.asarray(image).shape[:2])


# Copied from coordgan.matching.near_mass
def near_mass(heat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, h, w) heat maps -> (N,) mass in the 3 x 3 cells around each flat `index`."""
    pooled = F.avg_pool2d(heat[:, None], 3, stride=1, padding=1, count_include_pad=True)[:, 0] * 9
    return pooled.flatten(1).gather(1, index[:, None])[:, 0]


def move_points(pipe, alignment, points: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]) -> np.ndarray:
    """(N, 2) pixels of image A (size (H, W)) -> pixels of image B through congealed space: in by
    A's transformation (row 0 of `alignment`), out by B's (row 1), as in the paper's PCK-transfer."""
    s = pipe.input_size
    pm = torch.from_numpy(to_model_pixels(points, crop_frame(size_a), s).astype(np.float32)).to(alignment.grid.device)
    congealed = pipe.input_points_to_congealed(alignment.select([0]), pm[None])
    moved = pipe.congealed_points_to_input(alignment.select([1]), congealed)[0].float().cpu().numpy()
    return from_model_pixels(moved, crop_frame(size_b), s)


@torch.no_grad()
def match_points(pipe, image_a, image_b, points, cluster: int | None = None, heatmaps: bool = True) -> PointMatches:
    """Each point of `image_a` -> `image_b`: into congealed space by A's transformation, out by B's
    (`move_points`, as `GANgealingPipeline.transfer_keypoints`, without the left/right swap).

    The heat map spreads the point over the congealed cells whose sampling position in A lies near
    it (weights exp(-d^2 / 2 sigma^2), sigma = one flow cell in A's model pixels) and shows where B
    samples those cells, binned on a grid of about one flow cell over the whole of B. Confidence is the
    heat map's mass within one cell of the match times the coverage exp(-d_min^2 / 2 sigma^2):
    near 0 where no congealed cell samples the point (background the congealing crops away).
    """
    x, (size_a, size_b) = pipe.preprocess([image_a, image_b])
    fa, fb = crop_frame(size_a), crop_frame(size_b)
    pts = check_points(points, size_a)
    al = pipe.run(x, cluster=cluster)
    s, f = pipe.input_size, al.grid_flow_size.shape[1]
    cells = identity_grid(f, 1, x.device, al.grid_flow_size.dtype).reshape(1, -1, 2)
    pos_a = pipe.congealed_points_to_input(al.select([0]), cells)[0].float()  # (F*F, 2) A's model pixels of each cell
    pos_b = from_model_pixels(pipe.congealed_points_to_input(al.select([1]), cells)[0].float().cpu().numpy(), fb, s)
    pm = torch.from_numpy(to_model_pixels(pts, fa, s).astype(np.float32)).to(pos_a.device)
    matched = np.clip(move_points(pipe, al, pts, size_a, size_b), 0, [fb.width - 1, fb.height - 1]).astype(np.float32)

    sigma = s / f
    d2 = torch.cdist(pm, pos_a).square() if len(pts) else torch.zeros(0, f * f)  # (N, F*F)
    weights = torch.softmax(-d2 / (2 * sigma**2), 1).cpu().numpy()
    coverage = torch.exp(-d2.min(1).values / (2 * sigma**2)).cpu().numpy() if len(pts) else np.zeros(0)
    cell = fb.side / f  # B pixels per flow cell: the heat grid covers all of B with cells of about that size
    gh, gw = max(1, round(fb.height / cell)), max(1, round(fb.width / cell))
    bx = np.clip(np.floor((pos_b[:, 0] + 0.5) * gw / fb.width), 0, gw - 1).astype(np.int64)
    by = np.clip(np.floor((pos_b[:, 1] + 0.5) * gh / fb.height), 0, gh - 1).astype(np.int64)
    heat = np.zeros((len(pts), gh * gw), np.float32)
    np.add.at(heat.T, by * gw + bx, weights.T)
    heat = torch.from_numpy(heat.reshape(-1, gh, gw))
    mx = np.clip(np.floor((matched[:, 0] + 0.5) * gw / fb.width), 0, gw - 1).astype(np.int64)
    my = np.clip(np.floor((matched[:, 1] + 0.5) * gh / fb.height), 0, gh - 1).astype(np.int64)
    near = near_mass(heat, torch.from_numpy(my * gw + mx)).numpy()
    confidence = np.clip(near * coverage, 0, 1).astype(np.float32)
    return PointMatches(matched, confidence, heat.numpy() if heatmaps else np.zeros((0, gh, gw), np.float32))


def dense_flow(pipe, image_a, image_b, cluster: int | None = None, max_side: int = 256) -> np.ndarray:
    """For every pixel of `image_a` (at most `max_side` per side; larger images are sampled on a
    grid of that size), its match in `image_b` through congealed space, as `match_points(pipe,
    image_a, image_b, ...)` maps points (every pipeline's convention): float32 (H', W', 2) pixel
    indices (x, y) of B, NaN where A's pixel is outside the congealed frame's reach or lands outside B."""
    out = pipe.dense_correspondence(image_b, image_a, cluster=cluster)  # each model pixel of A -> B's, (S, S, 2)
    fa, fb = crop_frame(image_size(image_a)), crop_frame(image_size(image_b))
    s = pipe.input_size
    ha, wa = fa.height, fa.width
    gh, gw = min(ha, max_side), min(wa, max_side)
    ys, xs = (np.arange(gh) + 0.5) * ha / gh - 0.5, (np.arange(gw) + 0.5) * wa / gw - 0.5
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    model = np.round(to_model_pixels(grid, fa, s)).astype(np.int64)
    inside = (model >= 0).all(1) & (model < s).all(1)
    model = np.clip(model, 0, s - 1)
    flow = from_model_pixels(out.flow[model[:, 1], model[:, 0]], fb, s)
    in_b = ((flow >= -0.5) & (flow <= [fb.width - 0.5, fb.height - 0.5])).all(1)  # not the extrapolated frame
    flow[~(inside & in_b & out.valid[model[:, 1], model[:, 0]])] = np.nan
    return flow.reshape(gh, gw, 2).astype(np.float32)


def congealing_flow(pipe, image, output) -> np.ndarray:
    """For every pixel of a congealed image (`output`: `pipe.congeal([image])`), where it was
    sampled in `image`: float32 (R, R, 2) pixel indices (x, y) of the original image (its own size;
    the congealing reads its centred square crop)."""
    s = pipe.input_size
    px = normalized_to_pixels(output.grids[0].float(), s).numpy()  # model pixels of the unmirrored input
    return from_model_pixels(px.reshape(-1, 2), crop_frame(image_size(image)), s).reshape(px.shape).astype(np.float32)
