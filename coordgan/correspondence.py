"""Correspondence between images from their correspondence maps (CoordGAN, Mu et al., CVPR 2022).

A correspondence map C^w (B, 2, H, W) gives every pixel its warped canonical coordinate (x, y).
Two images correspond where their maps hold the same coordinate: eq. (1),

    T_{1,2}(i, j) = argmin_{p,q} || C^{w_1}(i, j) - C^{w_2}(p, q) ||^2,

relaxed with an affinity (a softmax over all pixels of the other map) for the warp loss, eq. (6),
and for label propagation; the Chamfer loss, eq. (7), keeps the warped coordinates spread over the
canonical frame.

None of these functions builds the (HW x HW) affinity. A soft warp is an attention:
softmax(-||a - b||^2 / t) @ values, and a kernel on squared distance is a dot product after
augmenting the vectors, q = [2a, -1], k = [b, ||b||^2]:

    q . k = 2 a.b - ||b||^2 = ||a||^2 - ||a - b||^2,

where ||a||^2 is the same for every key of a query and cancels in the softmax. So the warp is a
call to `torch.nn.functional.scaled_dot_product_attention` (a fused kernel that never stores the
logits) with scale 1 / t. Two refinements make it accurate and fast:

* Precision. The augmented dot product adds terms as large as ||a|| ||b|| / t (4e4 at t = 1e-4)
  to get a logit near zero, which costs float32 about 1e-2 of absolute logit error. Targets are
  therefore processed in compact spatial tiles (sorted by x into slabs, then by y, `chunk_size`
  targets per tile) and each tile is re-centred on its own centre before augmenting (distances
  do not change), so the large terms shrink to the tile's radius squared over t.
* Locality. Sources are sorted into small spatial blocks, each with a bounding circle. Around a
  tile of targets with centre c and radius R, every target has a source within
  U = R + min over blocks (distance to the block's centre + its radius). A block whose points are
  all further than R + sqrt(U^2 + L t) from c is further than sqrt(dmin^2 + L t) from every target
  of the tile: its logits trail each target's best by more than L, a relative weight under e^-L,
  and it is left out of the tile's attention (L = 36 in float32, 64 in float64: even 10^6 such
  points weigh less than the rounding error). For the hard rule and the Chamfer distance the same
  test with L = 0 leaves out only points that cannot be nearest, so that pruning is exact. At a
  sharp temperature the cost is a small multiple of (pixels x pixels within the kernel's reach).

Gradients of the soft warp (w.r.t. values and both maps) are computed by hand in the same tiles,
recomputing each tile's softmax (as flash attention does), so the backward pass needs no more
memory than the forward pass. It is once-differentiable (no double backward).

Everything here imports only torch/math, so the package stays self-contained.
"""

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Squared-distance kernel exp(-||a - b||^2 / t). The authors' code uses exp(-||a - b|| / 0.01) with
# plain L2 distance; the two kernels agree at ||a - b|| = t / 0.01, so t = 1.5e-4 matches them at
# 0.015, about one pixel of a 128x128 map (pixel pitch 2/128 = 0.0156): the same sharpness where it
# matters, a flatter top below one pixel and a faster fall-off beyond it. The range 1e-4 .. 1e-3
# corresponds to matching at 0.01 .. 0.1 (under 1 to about 6 pixels at 128).
DEFAULT_TEMPERATURE = 1.5e-4
# Source points whose logit trails a target's best logit by more than this are left out of the
# soft warp: even 10^6 of them weigh less than the dtype's rounding error (N e^-L < eps).
NEGLIGIBLE_LOGIT = {torch.float32: 36.0, torch.float64: 64.0}
# Target points per spatial tile (the query chunk) and source points per block of the source-side
# pruning (see _Blocks). Smaller tiles see fewer source points each but cost more Python overhead;
# 128 and 16 were the fastest on this 2-core CPU for 64..512 pixel maps at the default temperature.
DEFAULT_CHUNK_SIZE = 128
_KEY_BLOCK = 16
# Rows x keys of one explicit logits block (the matmul backend and the backward pass): 16 MiB in float32.
_BLOCK_ELEMENTS = 1 << 22
_BACKENDS = ("auto", "sdpa", "matmul")


def canonical_grid(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """The canonical coordinate frame C: (2, height, width), channel 0 is x, channel 1 is y.

    Coordinates are pixel centres in [-1, 1]: x_j = (j + 0.5) / width * 2 - 1 and
    y_i = (i + 0.5) / height * 2 - 1, the convention of `grid_sample(align_corners=False)`. (The
    authors' code used linspace(-1, 1), which puts the outer pixels' centres on the border; with
    pixel centres the same frame can be sampled at any resolution without shifting.)
    """
    if height < 1 or width < 1:
        raise ValueError(f"canonical_grid needs a positive size, got {height}x{width}")
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    x = (torch.arange(width, device=device, dtype=torch.float64) + 0.5) / width * 2 - 1
    y = (torch.arange(height, device=device, dtype=torch.float64) + 0.5) / height * 2 - 1
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"))  # (2, H, W): grid[0, i, j] = x_j, grid[1, i, j] = y_i
    return grid.to(dtype)


# ----------------------------------------------------------------------------- public functions


def soft_warp(
    values: torch.Tensor,
    source_coords: torch.Tensor,
    target_coords: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Move `values` from the source frame to the target frame: the relaxed eq. (1).

    Each target pixel gets the affinity-weighted mean of the source values,

        out[:, :, p] = sum_s softmax_s(-||C_target(p) - C_source(s)||^2 / temperature) values[:, :, s],

    the differentiable warp behind the warp loss (eq. 6) and soft label propagation. As the
    temperature goes to 0 it becomes the nearest-neighbour rule of eq. (1). Differentiable w.r.t.
    `values` and both coordinate maps (once).

    Args:
        values: (B, C, H, W) values on the source pixels (an image, one-hot labels, features).
        source_coords: (B, 2, H, W) correspondence map of the source.
        target_coords: (B, 2, H', W') correspondence map of the target (any size).
        temperature: of the squared-distance kernel; see DEFAULT_TEMPERATURE for how it relates to
            the authors' exp(-||d|| / 0.01).
        chunk_size: target pixels per spatial tile (None: DEFAULT_CHUNK_SIZE). Memory is
            O(chunk_size x source pixels) at most, usually far less (distant sources are left out).
        backend: "sdpa" runs each tile with `scaled_dot_product_attention` restricted to its fused
            kernels (flash / memory-efficient: no logits stored); "matmul" computes the tile's
            logits explicitly in blocks of 2^22 entries (strictly bounded memory, any device);
            "auto" uses sdpa and falls back to matmul where no fused kernel applies.

    Returns:
        (B, C, H', W') warped values, in the dtype of `values` (computed in float32, or float64
        when an input is float64; autocast is switched off inside).
    """
    _check_map("source_coords", source_coords)
    _check_map("target_coords", target_coords)
    if values.dim() != 4:
        raise ValueError(f"values must be (B, C, H, W), got shape {tuple(values.shape)}")
    _check_batch(values=values, source_coords=source_coords, target_coords=target_coords)
    if values.shape[-2:] != source_coords.shape[-2:]:
        raise ValueError(
            f"values live on the source pixels: their size {tuple(values.shape[-2:])} must match "
            f"source_coords {tuple(source_coords.shape[-2:])}"
        )
    temperature = _check_temperature(temperature)
    chunk_size = _check_chunk_size(chunk_size)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    dtype = _compute_dtype(values, source_coords, target_coords)
    b, c, _, _ = values.shape
    h2, w2 = target_coords.shape[-2:]
    if b == 0:
        return values.new_zeros(0, c, h2, w2)
    with torch.autocast(values.device.type, enabled=False):
        out = _SoftWarp.apply(
            values.to(dtype).flatten(2).transpose(1, 2).contiguous(),  # (B, N, C)
            _points(source_coords).to(dtype),  # (B, N, 2)
            _points(target_coords).to(dtype),  # (B, M, 2)
            temperature,
            chunk_size,
            backend,
        )  # (B, M, C)
    out = out.transpose(1, 2).reshape(b, c, h2, w2)  # (B, C, H', W')
    return out.to(values.dtype) if values.is_floating_point() else out


def nearest_source_index(
    source_coords: torch.Tensor, target_coords: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """The hard rule of eq. (1): for each target pixel, the flat index (i * W + j) of the source
    pixel whose coordinate is closest.

    Args:
        source_coords: (B, 2, H, W); target_coords: (B, 2, H', W').
        chunk_size: target pixels per tile (None: DEFAULT_CHUNK_SIZE).

    Returns:
        (B, H', W') int64 indices into the flattened source (H * W). Not differentiable.
    """
    _check_map("source_coords", source_coords)
    _check_map("target_coords", target_coords)
    _check_batch(source_coords=source_coords, target_coords=target_coords)
    chunk_size = _check_chunk_size(chunk_size)
    dtype = _compute_dtype(source_coords, target_coords)
    b, _, h2, w2 = target_coords.shape
    if b == 0:
        return torch.zeros(0, h2, w2, dtype=torch.long, device=target_coords.device)
    with torch.no_grad(), torch.autocast(source_coords.device.type, enabled=False):
        index = _nearest(_points(target_coords).to(dtype), _points(source_coords).to(dtype), chunk_size)  # (B, M)
    return index.view(b, h2, w2)


def propagate_label_probabilities(
    labels: torch.Tensor,
    source_coords: torch.Tensor,
    target_coords: torch.Tensor,
    num_classes: int,
    temperature: float | None = DEFAULT_TEMPERATURE,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Class probabilities of the target pixels: the soft warp of the one-hot source labels.

    This is the label propagation of the paper's evaluation (section 4.1: eq. 1 relaxed with the
    affinity). With temperature None the hard rule of eq. (1) is used and the result is one-hot.

    Args:
        labels: (B, H, W) int64 class indices in [0, num_classes) on the source pixels.
        source_coords: (B, 2, H, W); target_coords: (B, 2, H', W').

    Returns:
        (B, num_classes, H', W') float32 probabilities (each pixel sums to 1).
    """
    _check_labels(labels, source_coords, num_classes)
    if temperature is None:
        hard = propagate_labels(labels, source_coords, target_coords, num_classes, None, chunk_size)
        return F.one_hot(hard, num_classes).permute(0, 3, 1, 2).float()  # (B, K, H', W')
    one_hot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    return soft_warp(one_hot, source_coords, target_coords, temperature, chunk_size)


def propagate_labels(
    labels: torch.Tensor,
    source_coords: torch.Tensor,
    target_coords: torch.Tensor,
    num_classes: int,
    temperature: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Labels of the source image moved to the target image through the correspondence maps.

    temperature None: each target pixel takes the label of its nearest source coordinate, eq. (1).
    Otherwise: argmax of `propagate_label_probabilities` (the affinity-relaxed eq. 1).

    Args:
        labels: (B, H, W) int64 class indices in [0, num_classes) on the source pixels.
        source_coords: (B, 2, H, W); target_coords: (B, 2, H', W').

    Returns:
        (B, H', W') int64 labels on the target pixels.
    """
    _check_labels(labels, source_coords, num_classes)
    if temperature is not None:
        return propagate_label_probabilities(labels, source_coords, target_coords, num_classes, temperature, chunk_size).argmax(1)
    index = nearest_source_index(source_coords, target_coords, chunk_size)  # (B, H', W')
    return labels.long().flatten(1).gather(1, index.flatten(1)).view_as(index)


def chamfer_distance(
    coords_a: torch.Tensor,
    coords_b: torch.Tensor,
    squared: bool = False,
    reduction: str = "none",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Chamfer distance, eq. (7): mean over a of min_b ||a - b|| plus mean over b of min_a ||b - a||.

    With squared=True the distances are squared, as in the authors' code (pytorch3d's
    chamfer_distance with mean reduction); eq. (7) itself uses plain L2. Gradients flow to both
    sets through the selected nearest points (a zero distance contributes a zero gradient rather
    than NaN). The nearest points are found in tiles with exact pruning, never with the full
    distance matrix.

    Args:
        coords_a: (B, N, 2) points or a (B, 2, H, W) coordinate map.
        coords_b: (B, M, 2) points or a (B, 2, H', W') coordinate map.
        reduction: "none" -> (B,), "mean" or "sum" over the batch -> scalar.
    """
    a = _as_points("coords_a", coords_a)
    b = _as_points("coords_b", coords_b)
    _check_batch(coords_a=a, coords_b=b)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError(f"chamfer_distance needs non-empty point sets, got {a.shape[1]} and {b.shape[1]} points")
    if a.shape[0] == 0:
        loss = a.new_zeros(0)
        return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()
    chunk_size = _check_chunk_size(chunk_size)
    dtype = _compute_dtype(a, b)
    with torch.autocast(a.device.type, enabled=False):
        a, b = a.to(dtype), b.to(dtype)
        with torch.no_grad():
            nearest_in_b = _nearest(a, b, chunk_size)  # (B, N)
            nearest_in_a = _nearest(b, a, chunk_size)  # (B, M)
        a_to_b = _point_distance(a, _gather(b, nearest_in_b), squared)  # (B, N)
        b_to_a = _point_distance(b, _gather(a, nearest_in_a), squared)  # (B, M)
        loss = a_to_b.mean(1) + b_to_a.mean(1)  # (B,)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ----------------------------------------------------------------------------- checks and shapes


def _check_map(name: str, coords: torch.Tensor) -> None:
    if not isinstance(coords, torch.Tensor) or coords.dim() != 4 or coords.shape[1] != 2:
        shape = tuple(coords.shape) if isinstance(coords, torch.Tensor) else type(coords).__name__
        raise ValueError(f"{name} must be a correspondence map of shape (B, 2, H, W) holding (x, y), got {shape}")
    if not coords.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {coords.dtype}")
    if coords.shape[2] * coords.shape[3] == 0:
        raise ValueError(f"{name} must have at least one pixel, got {tuple(coords.shape)}")


def _as_points(name: str, coords: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) map or (B, N, 2) points -> (B, N, 2)."""
    if coords.dim() == 4:
        _check_map(name, coords)
        return _points(coords)
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"{name} must be (B, N, 2) points or a (B, 2, H, W) map, got {tuple(coords.shape)}")
    if not coords.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {coords.dtype}")
    return coords


def _check_batch(**tensors: torch.Tensor) -> None:
    sizes = {name: t.shape[0] for name, t in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch sizes differ: {', '.join(f'{k}={v}' for k, v in sizes.items())}")


def _check_temperature(temperature) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}") from None
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r} (use the hard rule, "
                         "nearest_source_index / propagate_labels(temperature=None), for the zero limit)")
    return t


def _check_chunk_size(chunk_size) -> int:
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _check_labels(labels: torch.Tensor, source_coords: torch.Tensor, num_classes: int) -> None:
    _check_map("source_coords", source_coords)
    if labels.dim() != 3 or labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be (B, H, W) integer class indices, got {tuple(labels.shape)} {labels.dtype}")
    if labels.shape[-2:] != source_coords.shape[-2:] or labels.shape[0] != source_coords.shape[0]:
        raise ValueError(f"labels {tuple(labels.shape)} must match source_coords {tuple(source_coords.shape)} (B, _, H, W)")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _points(coords: torch.Tensor) -> torch.Tensor:
    return coords.flatten(2).transpose(1, 2)  # (B, 2, H, W) -> (B, HW, 2)


def _gather(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """x (B, N, D) at index (B, K) -> (B, K, D); None means all of x."""
    if index is None:
        return x
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _point_distance(a: torch.Tensor, b: torch.Tensor, squared: bool) -> torch.Tensor:
    d2 = (a - b).square().sum(-1)
    if squared:
        return d2
    # sqrt has an infinite slope at 0: give coincident points a zero (sub)gradient instead of NaN
    safe = d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt()
    return torch.where(d2 > 0, safe, torch.zeros_like(safe))


# ----------------------------------------------------------------------------- tiles


def _spatial_order(points: torch.Tensor, chunk_size: int) -> torch.Tensor | None:
    """A permutation (B, M) that makes consecutive runs of chunk_size points spatially compact:
    sort by x into about sqrt(M / chunk_size) slabs, each a whole number of runs, then by y
    inside each slab."""
    b, m, _ = points.shape
    if m <= chunk_size:
        return None
    runs = -(-m // chunk_size)
    slab_size = -(-runs // max(1, round(math.sqrt(runs)))) * chunk_size
    ranks = torch.arange(m, device=points.device).expand(b, m)
    x_rank = torch.empty(b, m, dtype=torch.long, device=points.device).scatter_(1, points[..., 0].argsort(dim=1), ranks)
    y_rank = torch.empty(b, m, dtype=torch.long, device=points.device).scatter_(1, points[..., 1].argsort(dim=1), ranks)
    return (x_rank // slab_size * m + y_rank).argsort(dim=1)


class _Blocks:
    """Points (B, N, 2), and values (B, N, C) if given, sorted into spatially compact blocks of
    `size`: (B, NB, size, .). The last block is filled up with phantom points at `far` (value 0),
    far enough from everything never to be nearest nor to carry weight. Each block has a
    bounding circle (centre, radius) over its real points."""

    def __init__(self, points: torch.Tensor, values: torch.Tensor | None, size: int, far: torch.Tensor):
        b, n, _ = points.shape
        nb = -(-n // size)
        pad = nb * size - n
        self.n, self.size, self.order = n, size, _spatial_order(points, size)  # order (B, N) or None
        p = _gather(points, self.order)  # (B, N, 2) sorted
        real = torch.cat([p, p[:, -1:].expand(b, pad, 2)], 1).view(b, nb, size, 2)  # padding repeats a real point
        self.centre = (real.amin(2) + real.amax(2)) / 2  # (B, NB, 2)
        self.radius = (real - self.centre.unsqueeze(2)).square().sum(-1).amax(2).sqrt()  # (B, NB)
        self.points = torch.cat([p, far.expand(b, pad, 2)], 1).view(b, nb, size, 2)  # (B, NB, size, 2)
        self.values = None
        if values is not None:
            c = values.shape[-1]
            self.values = torch.cat([_gather(values, self.order), values.new_zeros(b, pad, c)], 1).view(b, nb, size, c)

    def select(self, centre: torch.Tensor, radius: torch.Tensor, slack: float) -> torch.Tensor | None:
        """Blocks (B, KB) that can matter to a tile of queries within `radius` (B, 1) of `centre`
        (B, 1, 2), or None for all. Every query has a point within U = radius + min over blocks of
        (distance to the block centre + block radius); a block is left out when all its points are
        further than radius + sqrt(U^2 + slack) from the tile centre, i.e. further than
        sqrt(dmin^2 + slack) from every query: never nearest (slack 0), or a softmax logit more
        than L below the best one (slack = L t)."""
        dist = (self.centre - centre).square().sum(-1).sqrt()  # (B, NB)
        bound = radius + (dist + self.radius).amin(1, keepdim=True)  # (B, 1)
        reach = radius + (bound.square() + slack).sqrt()
        return _kept_index(dist - self.radius <= reach * (1 + 1e-5) + 1e-7)  # a margin for rounding

    def take(self, blocks: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """(B, NB, size, D) at block index (B, KB) -> (B, KB * size, D)."""
        if index is not None:
            blocks = blocks.gather(1, index[:, :, None, None].expand(-1, -1, *blocks.shape[2:]))
        return blocks.flatten(1, 2)

    def positions(self, index: torch.Tensor | None) -> torch.Tensor:
        """Sorted positions (B, KB * size) of the points that `take` returns."""
        b, nb = self.points.shape[:2]
        if index is None:
            return torch.arange(nb * self.size, device=self.points.device).expand(b, -1)
        return (index.unsqueeze(-1) * self.size + torch.arange(self.size, device=index.device)).flatten(1)

    def original(self, positions: torch.Tensor) -> torch.Tensor:
        """Sorted positions (B, K) (never phantoms) -> indices into the caller's points."""
        positions = positions.clamp_max(self.n - 1)
        return positions if self.order is None else self.order.gather(1, positions)

    def unsort(self, x: torch.Tensor) -> torch.Tensor:
        """Per-point quantities (B, NB * size, D) in sorted order -> (B, N, D) in the caller's order."""
        x = x[:, : self.n]
        if self.order is None:
            return x.contiguous()
        return torch.empty_like(x).scatter_(1, self.order.unsqueeze(-1).expand_as(x), x)


def _negligible_logit(dtype: torch.dtype) -> float:
    return NEGLIGIBLE_LOGIT.get(dtype, NEGLIGIBLE_LOGIT[torch.float32])


def _far_point(queries: torch.Tensor, keys: torch.Tensor, slack: float) -> torch.Tensor:
    """Where the phantom keys of _Blocks go: (P, P) with P = 6E + 1 + sqrt(slack) for points in
    [-E, E]^2 is further than 5 sqrt(2) E + sqrt(slack) from all of them, while the bound U of
    _Blocks.select is at most 4 sqrt(2) E, so a phantom is never nearest nor weighs anything."""
    extent = torch.maximum(queries.detach().abs().amax(), keys.detach().abs().amax())
    return (6 * extent + 1 + math.sqrt(slack)).expand(1, 1, 2).to(keys.dtype)


def _tiles(queries: torch.Tensor, blocks: _Blocks, chunk_size: int, slack: float):
    """Yield (rows, centred queries, centre, block index) per spatial tile of the queries (B, M, 2):
    rows (B, m) which queries, centred queries (B, m, 2) = queries[rows] - centre, centre (B, 1, 2),
    block index (B, KB) or None: the key blocks that can matter to the tile (see _Blocks.select)."""
    b, m, _ = queries.shape
    order = _spatial_order(queries, chunk_size)
    for start in range(0, m, chunk_size):
        if order is None:
            rows = torch.arange(start, min(m, start + chunk_size), device=queries.device).expand(b, -1)
        else:
            rows = order[:, start : start + chunk_size]
        a = _gather(queries, rows)  # (B, m, 2)
        centre = (a.amin(1, keepdim=True) + a.amax(1, keepdim=True)) / 2  # (B, 1, 2)
        a = a - centre
        radius = a.square().sum(-1).amax(1, keepdim=True).sqrt()  # (B, 1)
        yield rows, a, centre, blocks.select(centre, radius, slack)


def _kept_index(keep: torch.Tensor) -> torch.Tensor | None:
    """keep (B, NB) bool -> (B, KB) indices of the kept blocks in order, or None when most are kept.
    Batch elements with fewer than KB kept blocks are padded with one of their left-out blocks,
    which is negligible (soft warp) or never nearest (hard rule) for every query of the tile."""
    b, n = keep.shape
    k = int(keep.sum(1).max())
    if k > n // 2:
        return None
    slot = torch.where(keep, keep.long().cumsum(1) - 1, k)  # left-out blocks go to a spare slot k
    filler = (~keep).long().argmax(1, keepdim=True)  # (B, 1) the first left-out block
    index = filler.expand(b, k + 1).clone()
    index.scatter_(1, slot, torch.arange(n, device=keep.device).expand(b, n))
    return index[:, :k]


# ----------------------------------------------------------------------------- kernels


def _augment(a: torch.Tensor, b: torch.Tensor, dim: int):
    """q = [2a, -1], k = [b, ||b||^2], zero-padded to `dim` features: q.k = ||a||^2 - ||a - b||^2."""
    q = torch.cat([2 * a, -torch.ones_like(a[..., :1])], -1)  # (B, m, 3)
    k = torch.cat([b, b.square().sum(-1, keepdim=True)], -1)  # (B, K, 3)
    return F.pad(q, (0, dim - 3)), F.pad(k, (0, dim - 3))


def _logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """(||a||^2 - ||a - b||^2) / t for a (B, s, 2), b (B, K, 2) -> (B, s, K); the ||a||^2 shift
    is the same along each row, so softmax over the last dim is that of -||a - b||^2 / t."""
    return torch.baddbmm(-b.square().sum(-1).unsqueeze(1), a, b.transpose(1, 2), alpha=2).div_(temperature)


_FUSED_SDPA = None


def _fused_sdpa_backends():
    global _FUSED_SDPA
    if _FUSED_SDPA is None:
        from torch.nn.attention import SDPBackend

        _FUSED_SDPA = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    return _FUSED_SDPA


def _attend_sdpa(a: torch.Tensor, b: torch.Tensor, values: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(-||a - b||^2 / t) @ values with a fused attention kernel (never the math fallback,
    which would store the logits). a (B, m, 2), b (B, K, 2), values (B, K, C) -> (B, m, C)."""
    from torch.nn.attention import sdpa_kernel

    c = values.shape[-1]
    dim = max(3, c)  # the CPU flash kernel wants equal query and value widths
    if a.device.type != "cpu":
        dim = -(-dim // 8) * 8  # GPU kernels want aligned widths
    q, k = _augment(a, b, dim)
    v = F.pad(values, (0, dim - c))
    with sdpa_kernel(_fused_sdpa_backends()):
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0 / temperature)
    return out[:, 0, :, :c]  # (B, m, C)


def _attend_matmul(a: torch.Tensor, b: torch.Tensor, values: torch.Tensor, temperature: float) -> torch.Tensor:
    """Same as _attend_sdpa with explicit logits, in blocks of at most 2^22 entries."""
    step = max(1, _BLOCK_ELEMENTS // max(1, b.shape[1]))
    out = [torch.softmax(_logits(a[:, i : i + step], b, temperature), -1) @ values for i in range(0, a.shape[1], step)]
    return torch.cat(out, 1)  # (B, m, C)


def _nearest(queries: torch.Tensor, keys: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Index (B, M) of the nearest key for every query; queries (B, M, 2), keys (B, N, 2)."""
    b, m, _ = queries.shape
    blocks = _Blocks(keys, None, _KEY_BLOCK, _far_point(queries, keys, 0.0))
    position = torch.empty(b, m, dtype=torch.long, device=queries.device)  # sorted key positions
    for rows, a, centre, index in _tiles(queries, blocks, chunk_size, 0.0):
        k = blocks.take(blocks.points, index) - centre  # (B, K, 2)
        k_sq = k.square().sum(-1).unsqueeze(1)  # (B, 1, K)
        step = max(1, _BLOCK_ELEMENTS // k.shape[1])
        best = torch.cat(
            # ||b||^2 - 2 a.b = ||a - b||^2 - ||a||^2: same argmin over b
            [torch.baddbmm(k_sq, a[:, i : i + step], k.transpose(1, 2), alpha=-2).argmin(-1) for i in range(0, a.shape[1], step)],
            1,
        )  # (B, m) into the taken keys
        position.scatter_(1, rows, blocks.positions(index).gather(1, best))
    return blocks.original(position)


class _SoftWarp(torch.autograd.Function):
    """out = softmax(-||target - source||^2 / t) @ values on point sets, tile by tile; the backward
    recomputes each tile's softmax P and uses dS = P * (dO v^T - rowsum(dO * O)),
    d target_i = 2/t sum_j dS_ij (b_j - a_i), d source_j = 2/t sum_i dS_ij (a_i - b_j), dV = P^T dO."""

    @staticmethod
    def forward(ctx, values, source, target, temperature, chunk_size, backend):
        # values (B, N, C), source (B, N, 2), target (B, M, 2)
        b, m, _ = target.shape
        c = values.shape[-1]
        slack = _negligible_logit(values.dtype) * temperature
        blocks = _Blocks(source, values, _KEY_BLOCK, _far_point(target, source, slack))
        out = values.new_empty(b, m, c)  # (B, M, C)
        use_sdpa = backend != "matmul"
        for rows, a, centre, index in _tiles(target, blocks, chunk_size, slack):
            k = blocks.take(blocks.points, index) - centre  # (B, K, 2)
            v = blocks.take(blocks.values, index)  # (B, K, C)
            o = None
            if use_sdpa:
                try:
                    o = _attend_sdpa(a, k, v, temperature)
                except RuntimeError:  # no fused kernel for this device / dtype / size
                    if backend == "sdpa":
                        raise
                    use_sdpa = False
            if o is None:
                o = _attend_matmul(a, k, v, temperature)
            out.scatter_(1, rows.unsqueeze(-1).expand(-1, -1, c), o)
        ctx.save_for_backward(values, source, target, out)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        values, source, target, out = ctx.saved_tensors
        b, c = values.shape[0], values.shape[-1]
        t = ctx.temperature
        slack = _negligible_logit(values.dtype) * t
        need_values, need_source, need_target = ctx.needs_input_grad[:3]
        need_coords = need_source or need_target
        blocks = _Blocks(source, values, _KEY_BLOCK, _far_point(target, source, slack))
        padded = blocks.points.shape[1] * blocks.size  # sorted source points and phantoms
        grad_values = values.new_zeros(values.shape[0], padded, values.shape[-1]) if need_values else None
        grad_source = source.new_zeros(source.shape[0], padded, 2) if need_source else None
        grad_target = torch.zeros_like(target) if need_target else None
        grad_out = grad_out.contiguous()
        for rows, a, centre, index in _tiles(target, blocks, ctx.chunk_size, slack):
            k = blocks.take(blocks.points, index) - centre  # (B, K, 2)
            v = blocks.take(blocks.values, index)  # (B, K, C)
            g = _gather(grad_out, rows)  # (B, m, C)
            o = _gather(out, rows) if need_coords else None  # (B, m, C)
            dv = v.new_zeros(b, c, k.shape[1]) if need_values else None  # (B, C, K), transposed: contiguous products
            dk = k.new_zeros(b, 2, k.shape[1]) if need_source else None  # (B, 2, K)
            da = torch.empty_like(a) if need_target else None  # (B, m, 2)
            step = max(1, _BLOCK_ELEMENTS // k.shape[1])
            for i in range(0, a.shape[1], step):
                rs = slice(i, i + step)
                p = torch.softmax(_logits(a[:, rs], k, t), -1)  # (B, s, K)
                if need_values:
                    dv.baddbmm_(g[:, rs].transpose(1, 2), p)  # dV^T += dO^T P
                if not need_coords:
                    continue
                ds = torch.bmm(g[:, rs], v.transpose(1, 2))  # (B, s, K) dP
                ds.sub_((g[:, rs] * o[:, rs]).sum(-1, keepdim=True)).mul_(p)  # dS, the logits' gradient
                if need_target:
                    da[:, rs] = (torch.bmm(ds, k) - a[:, rs] * ds.sum(-1, keepdim=True)) * (2 / t)
                if need_source:
                    dk += (torch.bmm(a[:, rs].transpose(1, 2), ds) - k.transpose(1, 2) * ds.sum(1, keepdim=True)) * (2 / t)
            positions = None if index is None else blocks.positions(index)
            if need_values:
                _scatter_add(grad_values, positions, dv.transpose(1, 2))
            if need_source:
                _scatter_add(grad_source, positions, dk.transpose(1, 2))
            if need_target:
                grad_target.scatter_(1, rows.unsqueeze(-1).expand(-1, -1, 2), da)
        grad_values = blocks.unsort(grad_values) if need_values else None
        grad_source = blocks.unsort(grad_source) if need_source else None
        return grad_values, grad_source, grad_target, None, None, None


def _scatter_add(total: torch.Tensor, index: torch.Tensor | None, part: torch.Tensor) -> None:
    if index is None:
        total += part
    else:
        total.scatter_add_(1, index.unsqueeze(-1).expand(-1, -1, total.shape[-1]), part)
