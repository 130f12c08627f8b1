"""The machinery behind coordgan.correspondence (private: call the functions there).

A soft warp softmax(-||a - b||^2 / t) @ values is an attention on augmented vectors
q = [2a, -1], k = [b, ||b||^2] (q . k = ||a||^2 - ||a - b||^2), run with
`scaled_dot_product_attention` at scale 1 / t, or with explicit logits in bounded blocks.
Two refinements make it accurate and fast:

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

The backend ("sdpa" or "matmul") is chosen once per call by `choose_backend`, from the device and
dtype, never by catching a kernel's failure (which would also hide running out of memory).
"""

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Source points whose logit trails a target's best logit by more than this are left out of the
# soft warp: even 10^6 of them weigh less than the dtype's rounding error (N e^-L < eps).
NEGLIGIBLE_LOGIT = {torch.float32: 36.0, torch.float64: 64.0}
# Source points per block of the source-side pruning (see _Blocks); with the default tile of 128
# targets, 16 was the fastest on this 2-core CPU for 64..512 pixel maps at the default temperature.
_KEY_BLOCK = 16
# Rows x keys of one explicit logits block (the matmul backend and the backward pass): 16 MiB in float32.
_BLOCK_ELEMENTS = 1 << 22


def gather(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """x (B, N, D) at index (B, K) -> (B, K, D); None means all of x."""
    if index is None:
        return x
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


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
        p = gather(points, self.order)  # (B, N, 2) sorted
        real = torch.cat([p, p[:, -1:].expand(b, pad, 2)], 1).view(b, nb, size, 2)  # padding repeats a real point
        self.centre = (real.amin(2) + real.amax(2)) / 2  # (B, NB, 2)
        self.radius = (real - self.centre.unsqueeze(2)).square().sum(-1).amax(2).sqrt()  # (B, NB)
        self.points = torch.cat([p, far.expand(b, pad, 2)], 1).view(b, nb, size, 2)  # (B, NB, size, 2)
        self.values = None
        if values is not None:
            c = values.shape[-1]
            self.values = torch.cat([gather(values, self.order), values.new_zeros(b, pad, c)], 1).view(b, nb, size, c)

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
        a = gather(queries, rows)  # (B, m, 2)
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
def choose_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """"sdpa" or "matmul" for a soft warp computed in `dtype` on `device`: `backend` itself unless
    it is "auto". The rule (decided once per call, before any tile runs):
    * CPU, float32 or float64: "sdpa" (the CPU flash kernel takes both, at any width: queries, keys
      and values are zero-padded to one width);
    * CUDA (not ROCm), float32 with the memory-efficient kernel enabled: "sdpa" (that kernel takes
      float32 at widths that are multiples of 8, to which the tiles pad);
    * anything else (float64 on a GPU, MPS, ...): "matmul", explicit logits in bounded blocks.
    An explicit "sdpa" where no fused kernel applies fails loudly instead of changing algorithm."""
    if backend != "auto":
        return backend
    if device.type == "cpu":
        return "sdpa" if dtype in (torch.float32, torch.float64) else "matmul"
    fused = device.type == "cuda" and torch.version.hip is None and torch.backends.cuda.mem_efficient_sdp_enabled()
    if fused and dtype == torch.float32:
        return "sdpa"
    return "matmul"




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


def nearest(queries: torch.Tensor, keys: torch.Tensor, chunk_size: int) -> torch.Tensor:
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
            [torch.baddbmm(k_sq, a[:, i : i + step], k.transpose(1, 2),
                           alpha=-2).argmin(-1) for i in range(0, a.shape[1], step)],
            1,
        )  # (B, m) into the taken keys
        position.scatter_(1, rows, blocks.positions(index).gather(1, best))
    return blocks.original(position)


class SoftWarp(torch.autograd.Function):
    """out = softmax(-||target - source||^2 / t) @ values on point sets, tile by tile; the backward
    recomputes each tile's softmax P and uses dS = P * (dO v^T - rowsum(dO * O)),
    d target_i = 2/t sum_j dS_ij (b_j - a_i), d source_j = 2/t sum_i dS_ij (a_i - b_j), dV = P^T dO."""

    @staticmethod
    def forward(ctx, values, source, target, temperature, chunk_size, backend):
        # values (B, N, C), source (B, N, 2), target (B, M, 2); backend "sdpa" or "matmul"
        b, m, _ = target.shape
        c = values.shape[-1]
        slack = _negligible_logit(values.dtype) * temperature
        blocks = _Blocks(source, values, _KEY_BLOCK, _far_point(target, source, slack))
        out = values.new_empty(b, m, c)  # (B, M, C)
        attend = {"sdpa": _attend_sdpa, "matmul": _attend_matmul}[backend]  # chosen once, by choose_backend
        for rows, a, centre, index in _tiles(target, blocks, chunk_size, slack):
            k = blocks.take(blocks.points, index) - centre  # (B, K, 2)
            v = blocks.take(blocks.values, index)  # (B, K, C)
            out.scatter_(1, rows.unsqueeze(-1).expand(-1, -1, c), attend(a, k, v, temperature))
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
            g = gather(grad_out, rows)  # (B, m, C)
            o = gather(out, rows) if need_coords else None  # (B, m, C)
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
                    dk += (torch.bmm(a[:, rs].transpose(1, 2),
                                     ds) - k.transpose(1, 2) * ds.sum(1, keepdim=True)) * (2 / t)
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
