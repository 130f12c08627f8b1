"""The inference fast paths of CoCosNet (issue 19) against the plain formulas: the CPU attention
kernel, the two-pass positional norm, the stacked SPADE convolutions, the cached spectral-norm
weights and the per-exemplar cache (and when each of those caches must be dropped)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cocosnet import tiny_random_pipeline
from cocosnet.correspondence import attention_chunked
from cocosnet.layers import SNConv2d, SPADEResnetBlock, positional_norm


def reference_attention(q, k, v, scale):
    return torch.softmax(scale * q.double() @ k.double().transpose(1, 2), -1) @ v.double()


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_cpu_attention_matches_the_dense_softmax(scale):
    g = torch.Generator().manual_seed(0)
    q, k = F.normalize(torch.randn(2, 300, 18, generator=g),
                       dim=-1), F.normalize(torch.randn(2, 200, 18, generator=g), dim=-1)
    v = torch.randn(2, 200, 5, generator=g)
    ref = reference_attention(q, k, v, scale)
    tolerance = 1e-6 * scale  # fp32 rounding of logits of size `scale`
    with torch.no_grad():
        fast = attention_chunked(q, k, v, scale, chunk_size=64)
    assert (fast.double() - ref).abs().max() < tolerance
    q.requires_grad_(True)  # the training path (out of place) gives the same values and a gradient
    out = attention_chunked(q, k, v, scale, chunk_size=64)
    assert (out.double() - ref).abs().max() < tolerance
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_positional_norm_matches_mean_and_unbiased_var():
    x = torch.randn(2, 37, 9, 11) * 3 + 1
    ref = (x - x.mean(1, keepdim=True)) / (x.var(1, keepdim=True) + 1e-5).sqrt()
    assert (positional_norm(x) - ref).abs().max() < 1e-5


def _unfused_block(block: SPADEResnetBlock, x, condition):
    """The block written with each SPADE on its own (the layout of the authors' code)."""
    x_s = block.conv_s(block.norm_s(x, condition)) if block.learned_shortcut else x
    dx = block.conv_0(F.leaky_relu(block.norm_0(x, condition), 0.2))
    dx = block.conv_1(F.leaky_relu(block.norm_1(dx, condition), 0.2))
    return x_s + dx


@pytest.mark.parametrize("fin,fout", [(8, 8), (8, 4)])
def test_spade_block_with_stacked_convs_is_the_plain_block(fin, fout):
    torch.manual_seed(0)
    block = SPADEResnetBlock(fin, fout, 5, hidden=6)
    x, condition = torch.randn(2, fin, 12, 12), torch.randn(2, 5, 48, 48)
    block.eval()  # (in train mode every call moves the spectral norms' power iteration on)
    ref = _unfused_block(block, x, condition)
    assert (block(x, condition) - ref).abs().max() < 1e-5  # with gradients: weights stacked on each call
    with torch.no_grad():
        first = block(x, condition)
        assert (first - _unfused_block(block, x, condition)).abs().max() < 1e-5
        block.norm_0.mlp_gamma.weight.mul_(2)  # a changed weight must not reuse the stacked copy
        assert (block(x, condition) - _unfused_block(block, x, condition)).abs().max() < 1e-5
        assert (block(x, condition) - first).abs().max() > 1e-3


def test_spectral_norm_weight_cache_follows_the_weights():
    conv = SNConv2d(4, 6, 3, padding=1).eval()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        a = conv(x)
        assert torch.equal(conv(x), a)
        bias = conv.bias[None, :, None, None]
        conv.weight_u.mul_(2)  # sigma = u^T W v doubles: the weight must be divided anew
        assert torch.allclose(conv(x) - bias, (a - bias) / 2, atol=1e-6)
    with torch.enable_grad():  # eval with gradients: recomputed, differentiable
        conv(x).sum().backward()
    assert conv.weight_orig.grad is not None


def _images(seed: int):
    rng = np.random.default_rng(seed)
    mask = np.zeros((64, 64), np.int64)
    mask[10:50, 12:52] = rng.integers(1, 12)
    mask[20:30, 20:45] = rng.integers(1, 12)
    return mask, Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def test_exemplar_cache_reuses_only_the_same_exemplar_and_weights():
    pipe = tiny_random_pipeline(seed=3)
    net = pipe.correspondence_network
    mask_a, photo_a = _images(0)
    mask_b, photo_b = _images(1)
    fresh = tiny_random_pipeline(seed=5).correspondence_network  # (built outside inference mode: loaded into twice)
    with torch.inference_mode():
        x, _ = pipe.encode_input_map(mask_a)
        xb, _ = pipe.encode_input_map(mask_b)
        y, y2 = pipe.preprocess([photo_a])[0], pipe.preprocess([photo_b])[0]
        first = net(x, y).warped_exemplar
        key = net.correlation(x, y)[3]
        assert net.correlation(xb, y)[3] is key  # same exemplar, another input map: reused
        assert torch.equal(net(x, y).warped_exemplar, first)
        other = net(x, y2).warped_exemplar  # another exemplar: recomputed
        assert not torch.equal(other, first)
        assert torch.equal(net(x, y).warped_exemplar, first)
        fresh.load_state_dict(net.state_dict())
        assert torch.allclose(fresh(x, y).warped_exemplar, first,
                              atol=1e-6)  # what was cached is what a fresh net computes
    reference = net.phi.weight  # used by the exemplar side only
    with torch.no_grad():
        reference.mul_(1.5)  # new weights: the cache is dropped
        x, y = x.clone(), y.clone()  # (normal tensors: they also go through autograd below)
        changed = net(x, y).warped_exemplar
        assert not torch.allclose(changed, first, atol=1e-4)
        fresh.load_state_dict(net.state_dict())
        assert torch.allclose(fresh(x, y).warped_exemplar, changed, atol=1e-6)
    net.train()
    net(x, y).warped_exemplar.sum().backward()  # training: no cache, gradients reach the exemplar adaptor
    assert reference.grad is not None


def test_correspondence_points_use_the_same_vectors_as_the_warp():
    pipe = tiny_random_pipeline(seed=4)
    mask, photo = _images(2)
    a = pipe.match_points(mask, photo, [(10, 12), (40, 30)], heatmaps=False).points
    b = pipe.match_points(mask, photo, [(10, 12), (40, 30)], heatmaps=False).points  # second call: cached exemplar side
    assert np.array_equal(a, b)
