"""COAT eq. 1-3 and the eq. 5 negatives: blockwise results against dense float64 references."""

import pytest
import torch
import torch.nn.functional as F

from coat.correspondence import (align_features, confident_matches, cosine_similarity_blocks, hard_negatives,
                                 match_statistics,
                                 random_negatives, soft_consistency_blocks, window_mask)
from coat.losses import correspondence_contrastive_loss


def dense_similarity(a, b):
    """Eq. 1 in float64, the whole (HW x HW) matrix: (B, HW1, HW2)."""
    a = F.normalize(a.double().flatten(2), dim=1)
    b = F.normalize(b.double().flatten(2), dim=1)
    return a.transpose(1, 2) @ b


def maps(seed, b=2, c=8, h=6, w=5, h2=4, w2=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h2, w2, generator=g)


@pytest.mark.parametrize("block_rows", [1, 4, 7, 1024])
def test_blockwise_similarity_and_consistency_match_dense_reference(block_rows):
    a, b = maps(0)
    s = dense_similarity(a, b)
    blocks = torch.cat([blk for _, blk in cosine_similarity_blocks(a, b, block_rows)], 1)
    torch.testing.assert_close(blocks.double(), s, atol=1e-5, rtol=0)
    q = s.square() / (s.max(1, keepdim=True).values * s.max(2, keepdim=True).values)  # eq. 2
    q_blocks = torch.cat([blk for _, blk in soft_consistency_blocks(a, b, block_rows)], 1)
    torch.testing.assert_close(q_blocks.double(), q, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("block_rows", [1, 3, 1024])
def test_mutual_nearest_neighbours_match_dense_reference(block_rows):
    a, b = maps(1, b=3, c=4)
    s = dense_similarity(a, b)
    stats = match_statistics(a, b, block_rows)
    assert torch.equal(stats.row_argmax, s.argmax(2))
    assert torch.equal(stats.col_argmax, s.argmax(1))
    fwd = s.argmax(2)
    mutual = (s.argmax(1).gather(1, fwd) == torch.arange(s.shape[1])) & (s.max(2).values > 0)
    assert torch.equal(confident_matches(a, b, block_rows).mask, mutual)
    assert mutual.any() and not mutual.all()
    # Q = 1 exactly on the confident set (up to rounding), < 1 elsewhere at the best match
    q = s.square() / (s.max(1, keepdim=True).values * s.max(2, keepdim=True).values)
    q_best = q.gather(2, fwd[..., None])[..., 0]
    assert torch.allclose(q_best[mutual], torch.ones(()).double(), atol=1e-6)
    assert (q_best[~mutual & (s.max(2).values > 0)] < 1 - 1e-6).all()
    torch.testing.assert_close(stats.confidence.double(),
                               torch.where(s.max(2).values > 0, q_best, torch.zeros_like(q_best)),
                               atol=1e-5, rtol=0)


def test_negative_similarity_is_never_a_match():
    a = torch.tensor([[1.0, 0.0]]).T.reshape(1, 2, 1, 1)
    b = torch.tensor([[-1.0, 0.0]]).T.reshape(1, 2, 1, 1)  # S = -1: argmax both ways, Q = 1, but S < 0
    assert not confident_matches(a, b).mask.any()


def test_alignment_swaps_only_confident_positions():
    a, b = maps(2, b=2, c=3, h=5, w=5, h2=5, w2=5)
    m = confident_matches(a, b)
    out = align_features(a, b, m)
    flat_a, flat_b, flat_out = a.flatten(2), b.flatten(2), out.flatten(2)
    for k in range(2):
        for i in range(25):
            expect = flat_b[k, :, m.index[k, i]] if m.mask[k, i] else flat_a[k, :, i]
            assert torch.equal(flat_out[k, :, i], expect)
    assert (~m.mask).any()  # some positions keep their content feature


def test_identical_maps_match_everywhere():
    a, _ = maps(3, b=1, c=16, h=6, w=6)
    m = confident_matches(a, a)
    assert m.mask.all() and torch.equal(m.index[0], torch.arange(36))
    assert torch.equal(align_features(a, a * 3, m), a * 3)


def test_hard_negatives_exclude_window_and_match_slow_reference():
    a, b = maps(4, b=1, c=6, h=6, w=6, h2=6, w2=6)
    i = torch.tensor([0, 7, 14, 35])
    j = torch.tensor([3, 3, 20, 1])
    neg = hard_negatives(a[0], b[0], i, j, num_negatives=5, radius=1, block=3)
    s = dense_similarity(a, b)[0]  # (HW1, HW2)
    for n in range(len(i)):
        yi, xi = divmod(int(i[n]), 6)
        allowed = [k for k in range(36) if not (abs(k // 6 - yi) <= 1 and abs(k % 6 - xi) <= 1)]
        ranked = sorted(allowed, key=lambda k: -float(s[k, j[n]]))[:5]
        assert neg[n].tolist() == ranked
        assert int(i[n]) not in neg[n].tolist()
    rnd = random_negatives((6, 6), i, 8, radius=1, generator=torch.Generator().manual_seed(0))
    assert not window_mask(i, (6, 6), 1).gather(1, rnd).any()


def test_ccl_matches_slow_reference():
    g = torch.Generator().manual_seed(5)
    con, sty, out = (torch.randn(1, 4, 5, 5, generator=g) for _ in range(3))
    m = confident_matches(con, sty)
    loss = correspondence_contrastive_loss([out], [con], [sty], [m], num_negatives=6, temperature=0.1, max_pairs=None)
    i, j = m.pairs(0)
    neg = hard_negatives(con[0], sty[0], i, j, 6)
    q = F.normalize(out[0].flatten(1).double(), dim=0)
    k = F.normalize(con[0].flatten(1).double(), dim=0)
    terms = []
    for n in range(len(i)):
        c_ii = torch.exp(q[:, i[n]] @ k[:, i[n]] / 0.1)
        c_neg = sum(torch.exp(q[:, i[n]] @ k[:, kk] / 0.1) for kk in neg[n])
        terms.append(-torch.log(c_ii / (c_neg + c_ii)))
    assert len(terms) > 0
    torch.testing.assert_close(loss.double(), torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        correspondence_contrastive_loss([out], [con], [sty], [m], negatives="semi")
