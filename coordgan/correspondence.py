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
logits) with scale 1 / t. The tiles that make it accurate and fast (each tile of
targets re-centred for float32 precision; distant source blocks left out with a bound on their
weight), the spatial index behind them and the hand-written backward pass live in
_correspondence_tiles.py; this module holds the public functions and their input checks.

Everything here imports only torch/math, so the package stays self-contained.
"""

import math

import torch
import torch.nn.functional as F

from ._correspondence_tiles import SoftWarp, choose_backend, gather, nearest

# Squared-distance kernel exp(-||a - b||^2 / t). The authors' code uses exp(-||a - b|| / 0.01) with
# plain L2 distance; the two kernels agree at ||a - b|| = t / 0.01, so t = 1.5e-4 matches them at
# 0.015, about one pixel of a 128x128 map (pixel pitch 2/128 = 0.0156): the same sharpness where it
# matters, a flatter top below one pixel and a faster fall-off beyond it. The range 1e-4 .. 1e-3
# corresponds to matching at 0.01 .. 0.1 (under 1 to about 6 pixels at 128).
DEFAULT_TEMPERATURE = 1.5e-4
# Target points per spatial tile (the query chunk; source points come in blocks of 16, see
# _correspondence_tiles). Smaller tiles see fewer source points each but cost more Python overhead;
# 128 was the fastest on this 2-core CPU for 64..512 pixel maps at the default temperature.
DEFAULT_CHUNK_SIZE = 128
_BACKENDS = ("auto", "sdpa", "matmul")
# The authors' evaluation rule (NVlabs/CoordGAN eval_corr.get_seg_transfer_img): softmax of minus the
# plain L2 distance over this temperature; see `authors_transfer`.
AUTHORS_TEMPERATURE = 0.01
# The label-propagation rules of `propagate`, by name (the default first), and the line a table or a
# menu shows for each.
OUR_RULE = "ours"  # eq. (1): the nearest canonical coordinate, on maps upsampled to the image size
AUTHORS_RULE = "authors"  # their evaluation: softmax(-L2 distance / 0.01) at the map size
RULES = (OUR_RULE, AUTHORS_RULE)
RULE_DESCRIPTIONS = {
    OUR_RULE: "our rule: eq. (1), nearest coordinate at the image size",
    AUTHORS_RULE: "the authors' rule: softmax(-L2 distance / 0.01) at the map size",
}


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
            "auto" picks one of the two once per call by a rule on device and dtype (sdpa on CPU and
            for float32 on CUDA, matmul elsewhere; see `_correspondence_tiles.choose_backend`).

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
    backend = choose_backend(backend, values.device, dtype)  # once per call, by rule (see there)
    with torch.autocast(values.device.type, enabled=False):
        out = SoftWarp.apply(
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
        index = nearest(_points(target_coords).to(dtype), _points(source_coords).to(dtype), chunk_size)  # (B, M)
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


def authors_transfer(
    values: torch.Tensor,
    source_coords: torch.Tensor,
    target_coords: torch.Tensor,
    temperature: float = AUTHORS_TEMPERATURE,
    hard: bool = False,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The authors' label/colour transfer (eval_corr.get_seg_transfer_img), for one pair per row.

    Each target pixel p gets sum_s softmax_s(-||C_target(p) - C_source(s)|| / temperature) values[s]:
    the plain (not squared, not normalised) L2 distance on raw coordinates. hard=True takes the value
    of the nearest source pixel (first on ties). Their function works on a batch of consecutive
    pairs and, in hard mode, always reads the first pair's labels; here every row is its own pair.
    Computed in float32 (float64 if an input is) by target chunks, never the (HW x HW) matrix.

    Args:
        values: (B, C, H, W) on the source pixels (one-hot or soft labels, colours).
        source_coords: (B, 2, H, W); target_coords: (B, 2, H', W').

    Returns:
        (B, C, H', W') transferred values on the target pixels.
    """
    _check_map("source_coords", source_coords)
    _check_map("target_coords", target_coords)
    _check_batch(values=values, source_coords=source_coords, target_coords=target_coords)
    if values.shape[-2:] != source_coords.shape[-2:]:
        raise ValueError(f"values {tuple(values.shape)} must match source_coords {tuple(source_coords.shape)} "
                         "(B, _, H, W)")
    t = _check_temperature(temperature)
    dtype = _compute_dtype(values, source_coords, target_coords)
    b, c, h2, w2 = values.shape[0], values.shape[1], *target_coords.shape[-2:]
    out = values.new_empty(b, h2 * w2, c, dtype=dtype)
    with torch.autocast(values.device.type, enabled=False):
        for i in range(b):
            src = _points(source_coords[i : i + 1])[0].to(dtype)  # (N, 2)
            tgt = _points(target_coords[i : i + 1])[0].to(dtype)  # (M, 2)
            vals = values[i].flatten(1).t().to(dtype)  # (N, C)
            for start in range(0, len(tgt), chunk_size):
                d = torch.cdist(tgt[start : start + chunk_size], src,
                                compute_mode="donot_use_mm_for_euclid_dist")  # (m, N)
                if hard:
                    out[i, start : start + chunk_size] = vals[d.argmin(1)]
                else:
                    out[i, start : start + chunk_size] = torch.softmax(-d / t, 1) @ vals
    return out.transpose(1, 2).reshape(b, c, h2, w2)


def propagate_labels(
    labels: torch.Tensor,
    source_coords: torch.Tensor,
    target_coords: torch.Tensor,
    num_classes: int,
    temperature: float | None = None,
    chunk_size: int | None = None,
    rule: str = OUR_RULE,
) -> torch.Tensor:
    """Labels of the source image moved to the target image through the correspondence maps, with
    the labels already on the source map's pixels: `propagate` with no resizing.

    Args:
        labels: (B, H, W) int64 class indices in [0, num_classes) on the source pixels.
        source_coords: (B, 2, H, W); target_coords: (B, 2, H', W').
        rule: one of RULES (see `propagate`).

    Returns:
        (B, H', W') int64 labels on the target pixels.
    """
    _check_labels(labels, source_coords, num_classes)
    return propagate(labels, source_coords, target_coords, rule, temperature=temperature, num_classes=num_classes,
                     chunk_size=chunk_size)


def propagate(
    labels: torch.Tensor,
    map_a: torch.Tensor,
    map_b: torch.Tensor,
    rule: str = OUR_RULE,
    size: tuple[int, int] | None = None,
    temperature: float | None = None,
    resolution: int | None = None,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Label propagation: the labels of image A carried to image B through their correspondence
    maps by one of RULES. The one home of the rules: the pipeline, the evaluation and the app call it.

    OUR_RULE, eq. (1): both maps upsampled (bilinear: they are smooth coordinate fields) to
    `resolution` x `resolution` (None: as they are), A's labels resized (nearest) to A's map; each
    pixel of B takes the label of A's pixel with the nearest canonical coordinate (temperature
    None) or the argmax of `propagate_label_probabilities` (the relaxed eq. 1, temperature > 0).
    AUTHORS_RULE (eval_corr.get_seg_transfer_img, soft mode): A's one-hot labels resized
    bilinearly to A's map, `authors_transfer` (temperature None: AUTHORS_TEMPERATURE), the argmax;
    `resolution` is not used. Either way the result is resized (nearest) to `size`.

    Args:
        labels: (B, H, W) integer class ids of image A, any size.
        map_a: (B, 2, h, w) correspondence map of A; map_b: (B, 2, h', w') of B.
        size: (H', W') of the result; None: B's map (after `resolution`).
        num_classes: class ids lie in [0, num_classes); None: labels.max() + 1.

    Returns:
        (B, H', W') int64 labels of B.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    _check_map("map_a", map_a)
    _check_map("map_b", map_b)
    _check_batch(labels=labels, map_a=map_a, map_b=map_b)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.numel() else 1
    _check_label_ids(labels, num_classes)
    labels = labels.long().to(map_a.device)
    if rule == AUTHORS_RULE:
        one_hot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)
        soft = _resize(one_hot, map_a.shape[-2:], "bilinear")  # (B, K, h, w), as the authors' loaders
        pred = authors_transfer(soft, map_a, map_b, temperature or AUTHORS_TEMPERATURE).argmax(1)
    else:
        if resolution is not None:
            map_a = _resize(map_a, (resolution, resolution), "bilinear")
            map_b = _resize(map_b, (resolution, resolution), "bilinear")
        source = _resize(labels[:, None].float(), map_a.shape[-2:], "nearest")[:, 0].long()  # (B, h, w)
        if temperature is None:
            index = nearest_source_index(map_a, map_b, chunk_size)  # (B, h', w')
            pred = source.flatten(1).gather(1, index.flatten(1)).view_as(index)
        else:
            pred = propagate_label_probabilities(source, map_a, map_b, num_classes, temperature, chunk_size).argmax(1)
    if size is not None:
        pred = _resize(pred[:, None].float(), tuple(size), "nearest")[:, 0].long()
    return pred


def _resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    """F.interpolate (align_corners=False), skipped at the same size (where it is the identity)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))


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
            nearest_in_b = nearest(a, b, chunk_size)  # (B, N)
            nearest_in_a = nearest(b, a, chunk_size)  # (B, M)
        a_to_b = _point_distance(a, gather(b, nearest_in_b), squared)  # (B, N)
        b_to_a = _point_distance(b, gather(a, nearest_in_a), squared)  # (B, M)
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
        raise ValueError(f"labels {tuple(labels.shape)} must match source_coords {tuple(source_coords.shape)} "
                         "(B, _, H, W)")
    _check_label_ids(labels, num_classes)


def _check_label_ids(labels: torch.Tensor, num_classes: int) -> None:
    if labels.dim() != 3 or labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be (B, H, W) integer class indices, got {tuple(labels.shape)} {labels.dtype}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _points(coords: torch.Tensor) -> torch.Tensor:
    return coords.flatten(2).transpose(1, 2)  # (B, 2, H, W) -> (B, HW, 2)



def _point_distance(a: torch.Tensor, b: torch.Tensor, squared: bool) -> torch.Tensor:
    d2 = (a - b).square().sum(-1)
    if squared:
        return d2
    # sqrt has an infinite slope at 0: give coincident points a zero (sub)gradient instead of NaN
    safe = d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt()
    return torch.where(d2 > 0, safe, torch.zeros_like(safe))
