"""COAT latent alignment (section 3.1): eq. 1 cosine similarity, eq. 2 soft mutual-nearest-
neighbour consistency, the confident set p^l and eq. 3 feature swap; the hard negatives of
eq. 5 for the correspondence contrastive loss.

Nothing here builds the full (HW x HW) similarity matrix: rows of S are computed in blocks of
`block_rows` (one block of `block_rows x HW` at a time), keeping running column maxima, so
64 x 64 maps (4096 positions) cost a few MiB instead of 64 MiB per pair.

Conventions: feature maps are (B, C, h, w); positions are flattened row-major, i = y * w + x;
i indexes the content map F^1, j the style map F^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BLOCK_ROWS = 1024


def flatten_normalized(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, hw, C), unit length along C: eq. 1 is then a dot product."""
    return F.normalize(features.flatten(2).transpose(1, 2).float(), dim=-1, eps=1e-8)


def cosine_similarity_blocks(content: torch.Tensor, style: torch.Tensor, block_rows: int = BLOCK_ROWS):
    """Eq. (1) in row blocks: yields (start, S[:, start:start + block_rows, :]), each (B, rows, HW2).

    content, style: (B, C, h, w) feature maps F^{1,l}, F^{2,l}."""
    a, b = flatten_normalized(content), flatten_normalized(style)
    for start in range(0, a.shape[1], block_rows):
        yield start, a[:, start:start + block_rows] @ b.transpose(1, 2)


@dataclass
class MatchStatistics:
    """Row and column maxima of S (eq. 1) and where they are, from one blockwise pass."""

    row_max: torch.Tensor  # (B, HW1) max_j S_{i,j}
    row_argmax: torch.Tensor  # (B, HW1) the style position j each content position i prefers
    col_max: torch.Tensor  # (B, HW2) max_i S_{i,j}
    col_argmax: torch.Tensor  # (B, HW2) the content position i each style position j prefers

    @property
    def mutual(self) -> torch.Tensor:
        """(B, HW1) bool: i is confident, (i, row_argmax[i]) in p (eq. 2: Q = 1 with S > 0).

        Q_{i,j} = 1 exactly when j = argmax_j S_{i,.} and i = argmax_i S_{.,j}; the check uses the
        argmaxes both ways and S > 0 (a negative S can reach Q = 1 spuriously), not float equality."""
        back = torch.gather(self.col_argmax, 1, self.row_argmax)  # (B, HW1)
        index = torch.arange(back.shape[1], device=back.device)
        return (back == index) & (self.row_max > 0)

    @property
    def confidence(self) -> torch.Tensor:
        """(B, HW1) Q_{i, j*} (eq. 2) at each content position's best match j*, in [0, 1]; 1 = MNN.

        With S_{i,j*} = max_j S_{i,j}: Q = row_max_i / col_max_{j*} (0 where S <= 0)."""
        col = torch.gather(self.col_max, 1, self.row_argmax)
        q = self.row_max / col.clamp_min(1e-12)
        return torch.where(self.row_max > 0, q.clamp(0, 1), torch.zeros_like(q))


@torch.no_grad()
def match_statistics(content: torch.Tensor, style: torch.Tensor, block_rows: int = BLOCK_ROWS) -> MatchStatistics:
    """One blockwise pass over S (eq. 1): row maxima/argmaxima and running column maxima."""
    bsz, hw2 = style.shape[0], style.shape[2] * style.shape[3]
    row_max, row_arg = [], []
    col_max = torch.full((bsz, hw2), -float("inf"), device=style.device)
    col_arg = torch.zeros((bsz, hw2), dtype=torch.long, device=style.device)
    for start, s in cosine_similarity_blocks(content, style, block_rows):  # s: (B, rows, HW2)
        m, a = s.max(2)
        row_max.append(m)
        row_arg.append(a)
        bm, ba = s.max(1)  # (B, HW2) best content row inside this block
        better = bm > col_max  # strict: ties keep the earliest i, as a dense argmax does
        col_max = torch.where(better, bm, col_max)
        col_arg = torch.where(better, ba + start, col_arg)
    return MatchStatistics(torch.cat(row_max, 1), torch.cat(row_arg, 1), col_max, col_arg)


def soft_consistency_blocks(content: torch.Tensor, style: torch.Tensor, block_rows: int = BLOCK_ROWS):
    """Eq. (2) in row blocks: yields (start, Q block (B, rows, HW2)),
    Q_{i,j} = S_{i,j}^2 / (max_i S_{i,j} * max_j S_{i,j}). Two passes over S, one block in memory."""
    stats = match_statistics(content, style, block_rows)
    for start, s in cosine_similarity_blocks(content, style, block_rows):
        rows = stats.row_max[:, start:start + s.shape[1], None]
        yield start, s.square() / (rows * stats.col_max[:, None, :])


@dataclass
class ScaleMatches:
    """The confident set p^l of one scale: content position i <-> style position j."""

    mask: torch.Tensor  # (B, HW) bool, content positions i that have a match
    index: torch.Tensor  # (B, HW) long, j for every i (meaningful where mask)
    confidence: torch.Tensor  # (B, HW) Q at (i, j*) (eq. 2)
    size: tuple  # (h, w) of the map

    def pairs(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(i, j) index vectors of p for batch element b."""
        i = self.mask[b].nonzero()[:, 0]
        return i, self.index[b, i]


def confident_matches(content: torch.Tensor, style: torch.Tensor, block_rows: int = BLOCK_ROWS) -> ScaleMatches:
    """p^l = {(i, j) | Q^l_{i,j} = 1}: mutual nearest neighbours with S > 0 (eq. 2)."""
    stats = match_statistics(content, style, block_rows)
    return ScaleMatches(stats.mutual, stats.row_argmax, stats.confidence, tuple(content.shape[-2:]))


def align_features(content: torch.Tensor, style: torch.Tensor, matches: ScaleMatches) -> torch.Tensor:
    """Eq. (3): F-hat_i = F^2_j where (i, j) in p, else F^1_i (hard swap, no soft warp).

    content (B, C, h, w), style (B, C, h2, w2) -> (B, C, h, w). Differentiable w.r.t. both maps."""
    b, c, h, w = content.shape
    style_flat = style.flatten(2)  # (B, C, HW2)
    gathered = torch.gather(style_flat, 2, matches.index[:, None, :].expand(-1, c, -1))  # (B, C, HW1)
    out = torch.where(matches.mask[:, None, :], gathered, content.flatten(2))
    return out.view(b, c, h, w)


def window_mask(index: torch.Tensor, size: tuple, radius: int) -> torch.Tensor:
    """(N,) positions i -> (N, HW) bool, True inside the (2 radius + 1)^2 window around i."""
    h, w = size
    ys, xs = (index // w)[:, None], (index % w)[:, None]
    grid = torch.arange(h * w, device=index.device)
    gy, gx = grid // w, grid % w
    return ((gy[None] - ys).abs() <= radius) & ((gx[None] - xs).abs() <= radius)


@torch.no_grad()
def hard_negatives(content: torch.Tensor, style: torch.Tensor, i: torch.Tensor, j: torch.Tensor, num_negatives: int,
                   radius: int = 1, block: int = 256) -> torch.Tensor:
    """Eq. (5) for one image pair: for each (i, j) in p, the content positions k most similar to
    the style feature j (largest S_{k,j}), k outside the (2 radius + 1)^2 window around i.

    PROPOSAL (the paper's "rank(S_{i,j}) > gamma" has no k in it): k runs over the content map
    ranked by S_{k,j}, the top `num_negatives` are kept. content (C, h, w), style (C, h2, w2);
    i, j (N,) -> (N, num_negatives) long. Columns of S are computed `block` pairs at a time."""
    a = flatten_normalized(content[None])[0]  # (HW1, C)
    b = flatten_normalized(style[None])[0]  # (HW2, C)
    k = min(num_negatives, a.shape[0] - (2 * radius + 1) ** 2)
    if k < 1:
        raise ValueError(f"a {tuple(content.shape[-2:])} map has no position outside the {2 * radius + 1}^2 window")
    out = []
    for s in range(0, len(i), block):
        cols = b[j[s:s + block]] @ a.T  # (n, HW1): S_{k, j} for each pair's j
        cols = cols.masked_fill(window_mask(i[s:s + block], content.shape[-2:], radius), -float("inf"))
        out.append(cols.topk(k, dim=1).indices)
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long, device=content.device)


@torch.no_grad()
def random_negatives(size: tuple, i: torch.Tensor, num_negatives: int, radius: int = 1, generator=None) -> torch.Tensor:
    """The ablation of eq. 5: `num_negatives` random content positions outside the window around i
    (CUT-style random patches). (N,) -> (N, num_negatives)."""
    h, w = size
    k = min(num_negatives, h * w - (2 * radius + 1) ** 2)
    noise = torch.rand(len(i), h * w, generator=generator).to(i.device)
    noise = noise.masked_fill(window_mask(i, size, radius), -1.0)
    return noise.topk(k, dim=1).indices
