"""coordgan.correspondence against dense references (the full HW x HW matrix, float64)."""

import pytest
import torch

from coordgan.correspondence import (
    DEFAULT_TEMPERATURE,
    canonical_grid,
    chamfer_distance,
    nearest_source_index,
    propagate_label_probabilities,
    propagate_labels,
    soft_warp,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiled functions run many small ops; on a 2-core machine shared with a training run,
    two intra-op threads wait for each other at every one of them (ms each). These tests check
    values, not parallel speed, so they run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- inputs and references


def smooth_map(batch, height, width, seed, dtype=torch.float64):
    """A warped canonical grid: random affine plus a sine bend, squashed by tanh (one-to-one, no
    two pixels share a coordinate), like a generated correspondence map."""
    g = torch.Generator().manual_seed(seed)
    grid = canonical_grid(height, width, dtype=torch.float64)[None].expand(batch, -1, -1, -1)  # (B, 2, H, W)
    matrix = torch.eye(2, dtype=torch.float64) + 0.15 * torch.randn(batch, 2, 2, generator=g, dtype=torch.float64)
    shift = 0.1 * torch.randn(batch, 2, 1, 1, generator=g, dtype=torch.float64)
    phase = 6.28 * torch.rand(batch, 2, 1, 1, generator=g, dtype=torch.float64)
    warped = torch.einsum("bij,bjhw->bihw", matrix, grid) + shift + 0.08 * torch.sin(3 * grid.flip(1) + phase)
    return torch.tanh(warped).to(dtype)


def random_map(batch, height, width, seed, dtype=torch.float64):
    """Coordinates drawn uniformly in [-1, 1]^2: no smoothness, no ties."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 2, height, width, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


def randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def points(coords):
    return coords.flatten(2).transpose(1, 2)  # (B, 2, H, W) -> (B, HW, 2)


def squared_distances(target_coords, source_coords):
    a, b = points(target_coords).double(), points(source_coords).double()
    return (a[:, :, None] - b[:, None]).square().sum(-1)  # (B, M, N), the full matrix


def dense_soft_warp(values, source_coords, target_coords, temperature):
    weights = torch.softmax(-squared_distances(target_coords, source_coords) / temperature, -1)  # (B, M, N)
    out = weights @ values.double().flatten(2).transpose(1, 2)  # (B, M, C)
    return out.transpose(1, 2).reshape(values.shape[0], values.shape[1], *target_coords.shape[-2:])


def dense_nearest(source_coords, target_coords):
    return squared_distances(target_coords,
                             source_coords).argmin(-1).view(target_coords.shape[0], *target_coords.shape[-2:])


def dense_chamfer(a, b, squared=False):
    d2 = (a[:, :, None] - b[:, None]).square().sum(-1)  # (B, N, M)
    d = d2 if squared else d2.sqrt()
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


SIZES = [((8, 8), (8, 8)), ((12, 10), (7, 9)), ((10, 12), (12, 10))]  # (source H, W), (target H, W)


# ----------------------------------------------------------------------------- canonical grid


def test_canonical_grid_pixel_centres():
    grid = canonical_grid(4, 8)
    assert grid.shape == (2, 4, 8) and grid.dtype == torch.get_default_dtype()
    torch.testing.assert_close(grid[0, 0], torch.linspace(-1 + 1 / 8, 1 - 1 / 8, 8))  # x along columns
    torch.testing.assert_close(grid[1, :, 0], torch.linspace(-1 + 1 / 4, 1 - 1 / 4, 4))  # y along rows
    assert (grid[0] == grid[0, :1]).all() and (grid[1] == grid[1, :, :1]).all()
    assert canonical_grid(3, 5, dtype=torch.float64).dtype == torch.float64


# ----------------------------------------------------------------------------- soft warp


@pytest.mark.parametrize("source_size,target_size", SIZES)
@pytest.mark.parametrize("temperature", [0.1, 1e-2, 1e-3])
def test_soft_warp_matches_dense(source_size, target_size, temperature):
    source, target = smooth_map(2, *source_size, seed=1), smooth_map(2, *target_size, seed=2)
    values = randn(2, 3, *source_size, seed=3)
    expected = dense_soft_warp(values, source, target, temperature)
    for backend in ("auto", "matmul"):
        for chunk_size in (None, 7):  # one tile, and many tiles with pruning
            out = soft_warp(values, source, target, temperature, chunk_size=chunk_size, backend=backend)
            assert out.shape == (2, 3, *target_size) and out.dtype == torch.float64
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    out32 = soft_warp(values.float(), source.float(), target.float(), temperature)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), expected, rtol=0, atol=2e-4)


def test_soft_warp_many_tiles_and_pruning_match_dense():
    """32x32 maps at a sharp temperature: most source blocks are left out of each tile."""
    source, target = smooth_map(2, 32, 32, seed=4), smooth_map(2, 30, 34, seed=5)
    values = randn(2, 5, 32, 32, seed=6)
    for temperature, chunk_sizes in ((DEFAULT_TEMPERATURE, (None, 50)), (1e-3, (None,)), (5e-3, (8,))):
        expected = dense_soft_warp(values, source, target, temperature)
        for chunk_size in chunk_sizes:  # with tiles of 8 the kernel's reach, not the tile, decides what is left out
            out = soft_warp(values, source, target, temperature, chunk_size=chunk_size)
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_soft_warp_float32_precision_at_low_temperature():
    """The augmented dot product loses float32 precision as 1/t grows; tiles re-centred on their
    own centre keep the error small down to t = 1e-4."""
    source, target = smooth_map(1, 48, 48, seed=7), smooth_map(1, 48, 48, seed=8)
    values = randn(1, 3, 48, 48, seed=9)
    for temperature, tolerance in ((1e-3, 1e-4), (1e-4, 1e-3)):
        expected = dense_soft_warp(values, source, target, temperature)
        out = soft_warp(values.float(), source.float(), target.float(), temperature)
        assert (out.double() - expected).abs().max() < tolerance


@pytest.mark.parametrize("source_size,target_size", SIZES[1:])
@pytest.mark.parametrize("temperature", [2e-2, 1e-3])
def test_soft_warp_gradients_match_dense(source_size, target_size, temperature):
    source = smooth_map(2, *source_size, seed=10).requires_grad_()
    target = smooth_map(2, *target_size, seed=11).requires_grad_()
    values = randn(2, 3, *source_size, seed=12).requires_grad_()
    weight = randn(2, 3, *target_size, seed=13)
    inputs = [values, source, target]
    expected = torch.autograd.grad((dense_soft_warp(values, source, target, temperature) * weight).sum(), inputs)
    for chunk_size in (None, 7):
        got = torch.autograd.grad((soft_warp(values, source, target, temperature, chunk_size) * weight).sum(), inputs)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-8 * e.abs().max().item())
    # one input at a time (the backward skips what is not needed)
    for i, x in enumerate(inputs):
        (g,) = torch.autograd.grad((soft_warp(values, source, target, temperature) * weight).sum(), [x])
        torch.testing.assert_close(g, expected[i], rtol=1e-7, atol=1e-8 * expected[i].abs().max().item())


def test_soft_warp_gradients_with_pruning_match_dense():
    source = smooth_map(1, 24, 24, seed=14).requires_grad_()
    target = smooth_map(1, 20, 26, seed=15).requires_grad_()
    values = randn(1, 2, 24, 24, seed=16).requires_grad_()
    weight = randn(1, 2, 20, 26, seed=17)
    inputs = [values, source, target]
    temperature = 5e-3
    expected = torch.autograd.grad((dense_soft_warp(values, source, target, temperature) * weight).sum(), inputs)
    for chunk_size in (40, 6):
        got = torch.autograd.grad((soft_warp(values, source, target, temperature, chunk_size) * weight).sum(), inputs)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-8 * e.abs().max().item())
    # float32 gradients are close too
    inputs32 = [x.detach().float().requires_grad_() for x in inputs]
    got32 = torch.autograd.grad((soft_warp(*inputs32, temperature) * weight.float()).sum(), inputs32)
    for g, e in zip(got32, expected):
        assert (g.double() - e).abs().max() < 1e-3 * e.abs().max()


def test_zero_temperature_limit_is_the_hard_rule():
    source, target = random_map(2, 12, 10, seed=18), random_map(2, 9, 11, seed=19)
    d2 = squared_distances(target, source).sort(-1).values  # (B, M, N)
    gap = (d2[..., 1] - d2[..., 0]).min().item()  # no ties: the nearest source is unique
    assert gap > 0
    index = nearest_source_index(source, target)
    assert torch.equal(index, dense_nearest(source, target))
    values = randn(2, 4, 12, 10, seed=20)
    hard = values.flatten(2).gather(2, index.flatten(1)[:, None].expand(-1, 4, -1)).view(2, 4, 9, 11)
    out = soft_warp(values, source, target, temperature=gap / 100)  # every runner-up weighs < e^-100
    torch.testing.assert_close(out, hard, rtol=0, atol=1e-12)


def test_identity_warp_returns_the_values():
    coords = smooth_map(2, 16, 16, seed=21)
    values = randn(2, 3, 16, 16, seed=22)
    torch.testing.assert_close(soft_warp(values, coords, coords, temperature=1e-5), values, rtol=0, atol=1e-9)
    out32 = soft_warp(values.float(), coords.float(), coords.float(), temperature=1e-5)
    torch.testing.assert_close(out32, values.float(), rtol=0, atol=1e-5)


def test_soft_warp_128_runs():
    source, target = smooth_map(1, 128, 128, seed=23,
                                dtype=torch.float32), smooth_map(1, 128, 128, seed=24, dtype=torch.float32)
    values = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(25)).requires_grad_()
    out = soft_warp(values, source, target)
    assert out.shape == (1, 3, 128, 128) and torch.isfinite(out).all()
    assert out.min() >= values.min() - 1e-5 and out.max() <= values.max() + 1e-5  # convex combinations
    out.mean().backward()
    torch.testing.assert_close(values.grad.sum(), torch.tensor(1.0), rtol=1e-4, atol=0)  # weights sum to 1 per target


def test_soft_warp_dtypes_and_autocast():
    source, target = smooth_map(1, 10, 10, seed=26,
                                dtype=torch.float32), smooth_map(1, 9, 9, seed=27, dtype=torch.float32)
    values = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(28))
    reference = soft_warp(values, source, target, 1e-2)
    out = soft_warp(values.bfloat16(), source.bfloat16(), target.bfloat16(), 1e-2)
    assert out.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_autocast = soft_warp(values, source, target, 1e-2)
    assert out_autocast.dtype == torch.float32
    torch.testing.assert_close(out_autocast, reference)  # computed in float32 under autocast
    assert (out.float() - reference).abs().max() < 0.05


# ----------------------------------------------------------------------------- hard rule and labels


@pytest.mark.parametrize("source_size,target_size", SIZES)
def test_nearest_source_index_matches_dense(source_size, target_size):
    source, target = random_map(2, *source_size, seed=29), random_map(2, *target_size, seed=30)
    expected = dense_nearest(source, target)
    for chunk_size in (None, 1, 5):
        index = nearest_source_index(source, target, chunk_size=chunk_size)
        assert index.dtype == torch.int64 and index.shape == (2, *target_size)
        assert torch.equal(index, expected)
    # float32: the chosen source is at the minimum distance (up to float32 rounding)
    index32 = nearest_source_index(source.float(), target.float())
    d2 = squared_distances(target, source)
    chosen = d2.gather(2, index32.flatten(1)[..., None])[..., 0]
    assert (chosen - d2.min(-1).values).abs().max() < 1e-6


def test_nearest_source_index_smooth_maps_with_pruning():
    source, target = smooth_map(2, 40, 40, seed=31), smooth_map(2, 36, 44, seed=32)
    assert torch.equal(nearest_source_index(source, target, chunk_size=30), dense_nearest(source, target))


@pytest.mark.parametrize("source_size,target_size", SIZES)
def test_label_propagation_matches_dense(source_size, target_size):
    source, target = smooth_map(2, *source_size, seed=33), smooth_map(2, *target_size, seed=34)
    labels = torch.randint(0, 5, (2, *source_size), generator=torch.Generator().manual_seed(35))
    one_hot = torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).double()
    # hard rule, eq. (1)
    hard = propagate_labels(labels, source, target, num_classes=5)
    index = dense_nearest(source, target)
    assert hard.dtype == torch.int64 and torch.equal(hard, labels.flatten(1).gather(1, index.flatten(1)).view_as(index))
    # soft: probabilities are the warped one-hot labels
    probabilities = propagate_label_probabilities(labels.double().long(), source, target, 5, temperature=1e-2)
    assert probabilities.shape == (2, 5, *target_size) and probabilities.dtype == torch.float32
    expected = dense_soft_warp(one_hot, source, target, 1e-2)
    torch.testing.assert_close(probabilities.double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2, *target_size))
    soft = propagate_labels(labels, source, target, 5, temperature=1e-2)
    assert torch.equal(soft, probabilities.argmax(1))
    # temperature None gives the hard rule as one-hot probabilities
    hard_probabilities = propagate_label_probabilities(labels, source, target, 5, temperature=None)
    assert torch.equal(hard_probabilities.argmax(1),
                       hard) and torch.equal(hard_probabilities.sum(1), torch.ones(2, *target_size))


def test_label_propagation_between_identical_maps_returns_the_labels():
    coords = smooth_map(2, 16, 12, seed=36, dtype=torch.float32)
    labels = torch.randint(0, 7, (2, 16, 12), generator=torch.Generator().manual_seed(37))
    assert torch.equal(propagate_labels(labels, coords, coords, 7), labels)
    assert torch.equal(propagate_labels(labels, coords, coords, 7, temperature=1e-4), labels)
    assert torch.equal(propagate_labels(labels.to(torch.uint8), coords, coords, 7), labels)


# ----------------------------------------------------------------------------- Chamfer distance


@pytest.mark.parametrize("squared", [False, True])
def test_chamfer_matches_dense_values_and_gradients(squared):
    a = random_map(2, 12, 10, seed=38).requires_grad_()
    b = random_map(2, 7, 9, seed=39).requires_grad_()
    pa, pb = points(a), points(b)
    expected = dense_chamfer(pa, pb, squared)
    expected_grads = torch.autograd.grad(expected.sum(), [a, b])
    for chunk_size in (None, 6):
        got = chamfer_distance(a, b, squared=squared, chunk_size=chunk_size)
        assert got.shape == (2,)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for g, e in zip(torch.autograd.grad(got.sum(), [a, b]), expected_grads):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    # point sets (B, N, 2) give the same as maps; reductions
    torch.testing.assert_close(chamfer_distance(pa, pb, squared=squared), expected)
    torch.testing.assert_close(chamfer_distance(a, pb, squared=squared, reduction="mean"), expected.mean())
    torch.testing.assert_close(chamfer_distance(pa, b, squared=squared, reduction="sum"), expected.sum())


def test_chamfer_with_canonical_grid_and_pruning():
    warped = smooth_map(2, 32, 32, seed=40, dtype=torch.float32)
    grid = canonical_grid(32, 32)[None].expand(2, -1, -1, -1)
    expected = dense_chamfer(points(grid).double(), points(warped).double())
    for chunk_size in (None, 16):
        torch.testing.assert_close(chamfer_distance(grid, warped, chunk_size=chunk_size).double(), expected,
                                   rtol=1e-5, atol=1e-7)


def test_chamfer_is_symmetric_and_zero_on_itself():
    a, b = random_map(2, 9, 8, seed=41), random_map(2, 6, 11, seed=42)
    torch.testing.assert_close(chamfer_distance(a, b), chamfer_distance(b, a), rtol=1e-14, atol=0)
    a = a.clone().requires_grad_()
    for squared in (False, True):
        same = chamfer_distance(a, a, squared=squared)
        assert torch.equal(same, torch.zeros(2, dtype=torch.float64))
        (grad,) = torch.autograd.grad(same.sum(), [a])
        assert torch.isfinite(grad).all() and (grad == 0).all()  # no NaN from sqrt at 0


# ----------------------------------------------------------------------------- errors


def test_errors_are_value_errors_with_a_message():
    source, target = smooth_map(2, 8, 8, seed=43), smooth_map(2, 6, 6, seed=44)
    values = randn(2, 3, 8, 8, seed=45)
    labels = torch.zeros(2, 8, 8, dtype=torch.int64)
    with pytest.raises(ValueError, match="batch sizes differ"):
        soft_warp(values, source, target[:1])
    with pytest.raises(ValueError, match="batch sizes differ"):
        soft_warp(values[:1], source, target)
    with pytest.raises(ValueError, match="batch sizes differ"):
        nearest_source_index(source[:1], target)
    with pytest.raises(ValueError, match="batch sizes differ"):
        chamfer_distance(source, target[:1])
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        soft_warp(values, torch.cat([source, source[:, :1]], 1), target)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        nearest_source_index(source, target[:, :1])
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        propagate_labels(labels, source[:, :1], target, 3)
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        chamfer_distance(points(source)[..., :1], target)
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            soft_warp(values, source, target, temperature=bad)
        with pytest.raises(ValueError, match="temperature"):
            propagate_label_probabilities(labels, source, target, 3, temperature=bad)
    with pytest.raises(ValueError, match="source pixels"):
        soft_warp(randn(2, 3, 6, 6, seed=46), source, target)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        propagate_labels(labels + 3, source, target, 3)
    with pytest.raises(ValueError, match="labels"):
        propagate_labels(labels.float(), source, target, 3)
    with pytest.raises(ValueError, match="labels"):
        propagate_labels(labels[:, :4], source, target, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        soft_warp(values, source, target, chunk_size=0)
    with pytest.raises(ValueError, match="backend"):
        soft_warp(values, source, target, backend="dense")
    with pytest.raises(ValueError, match="reduction"):
        chamfer_distance(source, target, reduction="max")


# ----------------------------------------------------------------------------- backend choice


def test_backend_is_chosen_once_by_rule_and_kernel_errors_propagate(monkeypatch):
    from coordgan import _correspondence_tiles as tiles

    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert tiles.choose_backend("auto", cpu,
                                torch.float32) == tiles.choose_backend("auto", cpu, torch.float64) == "sdpa"
    assert tiles.choose_backend("auto", cuda,
                                torch.float64) == tiles.choose_backend("auto", mps, torch.float32) == "matmul"
    assert tiles.choose_backend("matmul", cpu, torch.float32) == "matmul"
    assert tiles.choose_backend("sdpa", mps, torch.float32) == "sdpa"
    source, target = smooth_map(1, 6, 6, seed=1), smooth_map(1, 5, 5, seed=2)
    values = randn(1, 2, 6, 6, seed=3).float()

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(tiles, "_attend_sdpa", out_of_memory)  # never swallowed, never a silent switch to matmul
    with pytest.raises(torch.OutOfMemoryError):
        soft_warp(values, source.float(), target.float(), 0.1)
    assert soft_warp(values, source.float(), target.float(), 0.1, backend="matmul").shape == (1, 2, 5, 5)
