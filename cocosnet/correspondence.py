"""Cross-domain correspondence primitives (section 3.1): the centred cosine correlation of eq. (3)
and the softmax warp of eq. (4), computed as attention (softmax(alpha q k^T) v) in query chunks
with `scaled_dot_product_attention`, so no (HW x HW) tensor ever exists and a full-resolution
warp fits in memory. `dense_warp` is the literal formula, for tests on small inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Float64 machine epsilon: the authors add it to every L2 norm before dividing.
NORM_EPS = 2.220446049250313e-16
DEFAULT_CHUNK = 1024


def attention_chunked(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float,
                      chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """softmax(scale * query key^T) value, in chunks of `chunk_size` queries.

    query (B, Lq, E), key (B, Lk, E), value (B, Lk, Ev) -> (B, Lq, Ev). At most chunk_size x Lk
    logits exist at a time. On a GPU, or where E == Ev, each chunk is one
    `scaled_dot_product_attention` call (a fused kernel). On a CPU with Ev != E that call falls back to
    its reference kernel, which rescales the keys and masks infinities on every chunk (~30 % of the
    warp's time at 256 px), so there the chunk is two matrix products around a softmax.
    """
    outputs = []
    if query.device.type == "cpu" and value.shape[-1] != query.shape[-1]:
        key_t = key.transpose(1, 2)  # (B, E, Lk)
        if query.shape[-1] < 256:  # cheap logits: keep a chunk's logits (2 MiB) in cache for the softmax
            chunk_size = min(chunk_size, max(64, 2**19 // key.shape[1]))  # SAGAN at 128 px: 1.7x faster than 1024 rows
        for start in range(0, query.shape[1], chunk_size):
            q = query[:, start : start + chunk_size]
            logits = torch.baddbmm(q.new_empty(()), q, key_t, beta=0, alpha=scale)  # (B, chunk, Lk)
            outputs.append(_softmax_matmul(logits, value))
        return torch.cat(outputs, 1)
    k, v = key[:, None], value[:, None]  # (B, 1, Lk, E): one head
    for start in range(0, query.shape[1], chunk_size):
        q = query[:, None, start : start + chunk_size]
        outputs.append(F.scaled_dot_product_attention(q, k, v, scale=scale)[:, 0])
    return torch.cat(outputs, 1)


# exp() of (logit - max) below -60 is < 1e-26 of the largest term: raising it to exp(-60) changes the
# result by less than Lk * 1e-26, and keeps exp() and the products after it out of the subnormal
# floats, which x86 computes ~10-20x slower (measured: softmax of 4M logits spread over 200: 28 ms, 9 ms
# with subnormals flushed).
EXP_FLOOR = -60.0


def _softmax_matmul(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(logits, -1) @ value, normalised after the product (Ev columns, not Lk); in place on
    `logits` when no gradient is recorded."""
    top = logits.amax(-1, keepdim=True)
    if torch.is_grad_enabled():
        weights = (logits - top).clamp(min=EXP_FLOOR).exp()
        return torch.bmm(weights, value.to(weights.dtype)) / weights.sum(-1, keepdim=True)
    weights = logits.sub_(top).clamp_(min=EXP_FLOOR).exp_()
    return torch.bmm(weights, value.to(weights.dtype)).div_(weights.sum(-1, keepdim=True))


def normalize_features(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x / (||x||_2 + eps) along `dim` (the channel-wise normalisation of the domain adaptors)."""
    return x / (x.norm(p=2, dim=dim, keepdim=True) + NORM_EPS)


def correlation_features(features: torch.Tensor, match_kernel: int = 3) -> torch.Tensor:
    """Per-position vectors whose dot products are M(u, v) of eq. (3).

    features (B, C, H, W) -> (B, HW, C k^2): k x k patches unfolded (zero padding), centred over the
    C k^2 axis and L2-normalised, so q . k is the centred cosine similarity.
    """
    b, c, h, w = features.shape
    if match_kernel > 1:
        patches = F.unfold(features, match_kernel, padding=(match_kernel - 1) // 2)  # (B, C k^2, HW)
    else:
        patches = features.flatten(2)
    patches = patches - patches.mean(dim=1, keepdim=True)
    patches = normalize_features(patches, dim=1)
    return patches.transpose(1, 2)  # (B, HW, C k^2)


def soft_warp(query: torch.Tensor, key: torch.Tensor, values: torch.Tensor, alpha: float = 100.0,
              chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Eq. (4): r(u) = sum_v softmax_v(alpha M(u, v)) y(v), as attention.

    query (B, HWq, D), key (B, HWk, D) from `correlation_features`; values (B, Cv, HWk) or
    (B, Cv, h, w) with h w = HWk -> (B, Cv, HWq).
    """
    v = values.flatten(2).transpose(1, 2)  # (B, HWk, Cv)
    if query.dtype != v.dtype:
        v = v.to(query.dtype)
    out = attention_chunked(query, key, v, scale=alpha, chunk_size=chunk_size)  # (B, HWq, Cv)
    return out.transpose(1, 2)


def dense_warp(query: torch.Tensor, key: torch.Tensor, values: torch.Tensor, alpha: float = 100.0) -> torch.Tensor:
    """The literal eq. (4) with the full (HWq x HWk) softmax matrix: small inputs / tests only."""
    probabilities = torch.softmax(alpha * query @ key.transpose(1, 2), dim=-1)  # (B, HWq, HWk)
    return (probabilities @ values.flatten(2).transpose(1, 2)).transpose(1, 2)


@torch.no_grad()
def softmax_summaries(query: torch.Tensor, key: torch.Tensor, alpha: float = 100.0, rows=(),
                      chunk_size: int = DEFAULT_CHUNK) -> dict:
    """Per query: argmax, max probability, max logit, entropy (nats) and the top-1 minus top-2 logit
    gap of softmax_v(alpha M(u, v)),
    plus the full probability/logit rows of the queries listed in `rows`. Chunked over queries."""
    argmax, maxprob, maxlogit, entropy, gap = [], [], [], [], []
    rows = list(rows)
    row_logits = {}
    for start in range(0, query.shape[1], chunk_size):
        logits = alpha * (query[:, start : start + chunk_size] @ key.transpose(1, 2))  # (B, chunk, HWk)
        prob = torch.softmax(logits, dim=-1)
        top = logits.topk(2, dim=-1)
        argmax.append(top.indices[..., 0])
        maxlogit.append(top.values[..., 0])
        gap.append(top.values[..., 0] - top.values[..., 1])
        maxprob.append(prob.max(-1).values)
        p64 = prob.double()
        entropy.append(-(p64 * torch.where(p64 > 0, p64.log(), torch.zeros_like(p64))).sum(-1).float())
        for r in rows:
            if start <= r < start + logits.shape[1]:
                row_logits[r] = logits[:, r - start]
    out = {"argmax": torch.cat(argmax, 1), "maxprob": torch.cat(maxprob, 1), "maxlogit": torch.cat(maxlogit, 1),
           "entropy": torch.cat(entropy, 1), "top2_gap": torch.cat(gap, 1)}
    if rows:
        logits = torch.stack([row_logits[r] for r in rows], 1)  # (B, R, HWk)
        out["rows_logit"], out["rows_prob"] = logits, torch.softmax(logits, -1)
    return out


@torch.no_grad()
def best_match(query: torch.Tensor, key: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """argmax_v M(u, v) for every query u: (B, HWq) indices into the exemplar positions."""
    return torch.cat([(query[:, s : s + chunk_size] @ key.transpose(1, 2)).argmax(-1)
                      for s in range(0, query.shape[1], chunk_size)], 1)

