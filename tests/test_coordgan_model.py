"""CoordGAN networks, losses, pipeline and evaluation on micro configs (CPU, seconds)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from coordgan import CoordGANEncoder, CoordGANGenerator, CoordGANPipeline, losses
from coordgan.discriminator import ImageDiscriminator, PatchDiscriminator, minibatch_stddev, random_crops
from coordgan.evaluate import copy_baseline, exact_correspondence, miou, propagated_labels, rgb_nearest_baseline
from coordgan.layers import ModulatedConv2d
from coordgan.model import CoordinateWarpingNetwork

from coordgan.pipeline import MICRO_ENCODER, MICRO_GENERATOR as MICRO


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return CoordGANGenerator(**MICRO).eval()


@pytest.fixture(scope="module")
def pipe(generator):
    torch.manual_seed(1)
    return CoordGANPipeline(generator=generator, encoder=CoordGANEncoder(**MICRO_ENCODER).eval())


def test_generator_shapes_and_range(generator):
    assert generator.num_ws == 6 and generator.resolution == 16
    out = generator(torch.randn(3, 8), torch.randn(3, 8))
    assert out.image.shape == (3, 3, 16, 16)
    assert out.correspondence_map.shape == (3, 2, 8, 8)
    assert out.correspondence_map.abs().max() <= 1
    assert out.structure_code.shape == (3, 8) and out.texture_code.shape == (3, 6, 8)


def test_structure_alone_decides_the_correspondence_map(generator):
    z_s = torch.randn(1, 8).expand(4, -1)
    out = generator(z_s, torch.randn(4, 8), randomize_noise=False)
    assert torch.equal(out.correspondence_map[0], out.correspondence_map[3])
    assert not torch.allclose(out.image[0], out.image[3])


def test_w_and_expanded_w_plus_are_the_same_input(generator):
    w_s, w_t = torch.randn(2, 8), torch.randn(2, 8)
    a = generator(structure_code=w_s, texture_code=w_t, randomize_noise=False).image
    b = generator(structure_code=w_s, texture_code=w_t[:, None].expand(-1, 6, -1), randomize_noise=False).image
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="W\\+ texture code needs 6"):
        generator(structure_code=w_s, texture_code=torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="exactly one"):
        generator(torch.randn(2, 8), torch.randn(2, 8), structure_code=w_s)


def test_per_pixel_synthesis_follows_the_correspondence_map_alone():
    """kernel_size=1, no upsampling: a pixel's colour is a function of its own warped coordinate
    and the codes, so permuting the map's pixels permutes the image's pixels (eq. 2 with A per pixel)."""
    torch.manual_seed(0)
    g = CoordGANGenerator(**dict(MICRO, upsample_channels=(), kernel_size=1, template_layers=2)).eval()
    cmap = torch.rand(2, 2, 8, 8) * 2 - 1
    w_t = torch.randn(2, 8)
    order = torch.randperm(64)
    shuffled = cmap.flatten(2)[..., order].reshape(2, 2, 8, 8)
    image = g.synthesize(cmap, w_t, randomize_noise=False)
    torch.testing.assert_close(g.synthesize(shuffled, w_t, randomize_noise=False),
                               image.flatten(2)[..., order].reshape(2, 3, 8, 8))
    # with 3x3 kernels neighbours mix, so the same permutation does not commute
    g3 = CoordGANGenerator(**dict(MICRO, upsample_channels=())).eval()
    image3 = g3.synthesize(cmap, w_t, randomize_noise=False)
    assert not torch.allclose(g3.synthesize(shuffled, w_t, randomize_noise=False),
                              image3.flatten(2)[..., order].reshape(2, 3, 8, 8), atol=1e-3)


def test_template_layers_ignore_the_texture_code():
    torch.manual_seed(0)
    g = CoordGANGenerator(**dict(MICRO, kernel_size=1, template_layers=2)).eval()
    with torch.no_grad():
        g.template_code.normal_()
    seen = []
    hooks = [g.convs[i].register_forward_hook(lambda m, i, o: seen.append(o)) for i in range(3)]
    cmap = g.correspondence_map(torch.randn(1, 8)).expand(2, -1, -1, -1)
    image = g.synthesize(cmap, torch.randn(2, 8), randomize_noise=False)
    for h in hooks:
        h.remove()
    template_0, template_1, textured = seen
    torch.testing.assert_close(template_0[0], template_0[1])  # the template layers draw the same parts
    torch.testing.assert_close(template_1[0], template_1[1])
    assert not torch.allclose(textured[0], textured[1])  # later layers take w_t
    assert not torch.allclose(image[0], image[1])
    with pytest.raises(ValueError, match="template_layers must be in \\[0, 3\\]"):
        CoordGANGenerator(**dict(MICRO, template_layers=4))
    with pytest.raises(ValueError, match="kernel_size must be 1 or 3"):
        CoordGANGenerator(**dict(MICRO, kernel_size=5))


def test_modulated_conv_equals_per_sample_weights():
    """The activation-scaling form equals StyleGAN2's per-sample modulated, demodulated weights."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, style_dim=4)
    x, w = torch.randn(3, 5, 6, 6), torch.randn(3, 4)
    style = conv.modulation(w)
    outs = []
    for i in range(3):
        weight = conv.weight * conv.scale * style[i][None, :, None, None]
        weight = weight * torch.rsqrt(weight.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8)
        outs.append(F.conv2d(x[i : i + 1], weight, padding=1))
    torch.testing.assert_close(conv(x, w), torch.cat(outs), rtol=1e-4, atol=1e-5)


def test_warping_network_is_the_mlp_on_the_concatenation():
    """Eq. (3) literally: P([C(i, j), w_s]) with the first layer applied to the concatenation."""
    torch.manual_seed(0)
    net = CoordinateWarpingNetwork(w_dim=6, hidden=5)
    grid = torch.rand(2, 4, 3) * 2 - 1
    w = torch.randn(2, 6)
    first = torch.cat([net.coord_in.weight, net.code_in.weight], 1)  # (hidden, 2 + w_dim)
    points = grid.flatten(1).t()
    concat = torch.cat([points[None].expand(2, -1, -1), w[:, None].expand(-1, 12, -1)], -1)
    h = F.relu(concat @ first.t() + net.coord_in.bias)
    ref = torch.tanh(net.out(F.relu(net.hidden(h)))).transpose(1, 2).reshape(2, 2, 4, 3)
    torch.testing.assert_close(net(grid, w), ref)


def test_truncation_and_code_means(generator):
    generator.update_code_means(n=256, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, 8)
    torch.testing.assert_close(generator.structure_code(z, truncation=0.0), generator.structure_code_mean.expand(2, -1))
    half = generator.texture_code(z, 0.5)
    torch.testing.assert_close(half, (generator.texture_code(z) + generator.texture_code_mean) / 2)


def test_generator_save_load_round_trip(generator, tmp_path):
    generator.save_pretrained(tmp_path)
    loaded = CoordGANGenerator.from_pretrained(tmp_path).eval()
    z = torch.randn(2, 8)
    a = generator(z, z, randomize_noise=False)
    b = loaded(z, z, randomize_noise=False)
    torch.testing.assert_close(a.image, b.image)
    assert torch.equal(loaded.canonical_coords, generator.canonical_coords)


def test_discriminators():
    torch.manual_seed(0)
    d = ImageDiscriminator(resolution=16, channels=(8, 8, 8))
    assert d(torch.randn(4, 3, 16, 16)).shape == (4,)
    with pytest.raises(ValueError, match="power of two"):
        ImageDiscriminator(resolution=16, channels=(8, 8))
    pd = PatchDiscriminator(crop_size=8, channels=(8, 8), num_crops=3, crop_fraction=(0.25, 0.5))
    images = torch.randn(2, 3, 16, 16)
    crops = pd.crops(images)
    assert crops.shape == (2, 3, 3, 8, 8)
    assert pd(crops, pd.crops(images)).shape == (2, 3)
    assert minibatch_stddev(torch.randn(6, 4, 2, 2)).shape == (6, 5, 2, 2)


def test_full_size_unflipped_crop_is_the_image():
    images = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    crops = random_crops(images, 4, (1.0, 1.0), 8)
    for i in range(2):
        for k in range(4):  # a full crop is the image or its mirror
            c = crops[i, k]
            assert torch.allclose(c, images[i], atol=1e-5) or torch.allclose(c, images[i].flip(-1), atol=1e-5)


def test_encoder_shapes_and_errors():
    enc = CoordGANEncoder(**MICRO_ENCODER)
    w_s, w_t = enc(torch.randn(2, 3, 16, 16))
    assert w_s.shape == (2, 8) and w_t.shape == (2, 6, 8)
    with pytest.raises(ValueError, match="16x16"):
        enc(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="8x8"):
        CoordGANEncoder(resolution=64, channels=(8, 8))


def test_losses():
    assert losses.ramp(0, 10) == 0 and losses.ramp(5, 10) == 0.5 and losses.ramp(50, 10) == 1 and losses.ramp(3, 0) == 1
    logits = torch.tensor([0.0, 2.0])
    torch.testing.assert_close(losses.generator_adversarial_loss(logits), F.softplus(-logits).mean())
    torch.testing.assert_close(losses.discriminator_adversarial_loss(logits, -logits), 2 * F.softplus(-logits).mean())
    x = torch.randn(3, 4, requires_grad=True)
    # D(x) = sum(2 x) per sample: gradient 2 everywhere, ||grad||^2 = 4 * 4
    torch.testing.assert_close(losses.r1_penalty((2 * x).sum(1), x), torch.tensor(16.0))
    from coordgan.correspondence import canonical_grid

    assert losses.chamfer_loss(canonical_grid(6, 6)[None].expand(2, -1, -1, -1)).item() < 1e-3
    squeezed = canonical_grid(6, 6)[None] * 0.5
    assert losses.chamfer_loss(squeezed).item() > 0.05


def test_pipeline_generate_is_seeded_and_swaps(pipe):
    a = pipe.generate(structure_seed=[3, 3], texture_seed=[4, 5])
    b = pipe.generate(structure_seed=[3, 3], texture_seed=[4, 5])
    assert [np.asarray(i).tobytes() for i in a.images] == [np.asarray(i).tobytes() for i in b.images]
    assert a.images[0].size == (16, 16) and a.correspondence_images[0].size == (16, 16)
    assert torch.equal(a.correspondence_maps[0], a.correspondence_maps[1])  # same structure seed
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(a.images[1]))
    end = pipe.generate(structure_seed=3, texture_seed=4, structure_seed_2=9, structure_mix=1.0)
    target = pipe.generate(structure_seed=9, texture_seed=4)
    torch.testing.assert_close(end.correspondence_maps, target.correspondence_maps)
    mid = pipe.generate(structure_seed=3, texture_seed=4, structure_seed_2=9, structure_mix=0.5)
    torch.testing.assert_close(mid.structure_codes, (a.structure_codes[:1] + target.structure_codes) / 2)
    with pytest.raises(ValueError, match="structure codes but"):
        pipe.generate(structure_seed=[1, 2], texture_seed=[1, 2, 3])


def test_pipeline_encode_and_propagate(pipe):
    rng = np.random.default_rng(0)
    ref = Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    query = Image.fromarray(rng.integers(0, 255, (30, 10, 3), dtype=np.uint8))
    enc = pipe.encode([ref, query])
    assert enc.correspondence_maps.shape == (2, 2, 8, 8) and enc.texture_codes.shape == (2, 6, 8)
    labels = rng.integers(0, 4, (20, 24))
    out = pipe.propagate_labels(ref, labels, [query, ref])
    assert out[0].shape == (30, 10) and out[1].shape == (20, 24)
    assert out[0].dtype == np.int64 and set(np.unique(out[0])) <= set(range(4))
    # a query identical to the reference gets the reference labels back at the model resolution
    small = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=(16, 16),
                          mode="nearest")[0, 0].long().numpy()
    same = pipe.propagate_labels(ref, labels, ref.resize((16, 16)), resolution=16)[0]
    pred_small = pipe.propagate_labels(ref, Image.fromarray(labels.astype(np.uint8), mode="L"), [ref], resolution=16)[0]
    assert pred_small.shape == labels.shape
    assert same.shape == (16, 16)
    assert (same == small).mean() > 0.9
    with pytest.raises(ValueError, match="integer array"):
        pipe.propagate_labels(ref, labels.astype(float), [query])
    with pytest.raises(ValueError, match="class ids"):
        pipe.propagate_labels(ref, Image.new("RGB", (4, 4)), [query])


@pytest.mark.parametrize("rule, temperature", [("ours", None), ("ours", 1e-4), ("authors", None)])
def test_evaluation_and_pipeline_give_the_same_labels(pipe, rule, temperature):
    """One home for the rule: evaluate.propagated_labels and pipe.propagate_labels (which the app
    calls) both go through correspondence.propagate, so the same inputs give the same labels."""
    import synthetic

    batch = synthetic.sample("faces", 2, 16, seed=5)
    photos = [Image.fromarray(im) for im in batch.image]
    maps = pipe.encode(photos).correspondence_maps.float()  # the batch the pipeline encodes: [reference, query]
    evaluated = propagated_labels(maps, batch.labels, 0, [1], 12, rule, temperature)[0]
    piped = pipe.propagate_labels(photos[0], batch.labels[0], [photos[1]], temperature, rule=rule)[0]
    np.testing.assert_array_equal(evaluated, piped)
    assert evaluated.shape == (16, 16) and len(np.unique(piped)) > 1


def test_pipeline_save_load(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = CoordGANPipeline.from_pretrained(tmp_path)
    a = pipe.generate(structure_seed=1, texture_seed=2)
    b = loaded.generate(structure_seed=1, texture_seed=2)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))


def test_miou_and_baselines():
    truth = np.array([[0, 1, 1], [2, 2, 0]])
    assert miou([truth], [truth], 3) == 100
    pred = np.array([[1, 1, 2], [2, 2, 2]])  # class 1: I=1, U=2; class 2: I=2, U=3 (bg pixels ignored)
    assert miou([pred], [truth], 3) == pytest.approx((1 / 2 + 2 / 3) / 2 * 100)
    assert copy_baseline(truth, (4, 6)).shape == (4, 6)
    image = np.zeros((2, 3, 3), np.uint8)
    image[truth == 1] = 255
    assert np.array_equal(rgb_nearest_baseline(image, truth, image) == 1, truth == 1)


def test_exact_correspondence_ceiling_on_synthetic_faces():
    import synthetic

    b = synthetic.sample("faces", 4, 48, seed=77)
    n = synthetic.category("faces").num_classes
    preds = [exact_correspondence(b.coords[0], b.labels[0], b.coords[q], n) for q in (1, 2, 3)]
    assert miou(preds, list(b.labels[1:]), n) > 75  # nearest neighbour at 48 px: ~83
    assert miou([copy_baseline(b.labels[0], (48, 48)) for _ in range(3)], list(b.labels[1:]),
                n) < miou(preds, list(b.labels[1:]), n)


def test_edge_distance_ignores_colour_and_sees_layout():
    import synthetic
    from train.data import image_to_tensor

    s = synthetic.sample_structures("faces", 4, 5, "medium")
    t = synthetic.sample_textures("faces", 4, 6)
    a = image_to_tensor(synthetic.render("faces", s, t, 32).image)
    recoloured = a * 0.5 + 0.2  # a global colour/contrast change: the same layout
    assert losses.edge_distance(a, recoloured).item() < 1e-3
    moved = torch.roll(a, shifts=6, dims=-1)
    assert losses.edge_distance(a, moved).item() > 0.2
    assert losses.texture_swap_loss(None, a, recoloured, "edges") == losses.edge_distance(a, recoloured)


def test_bundled_checkpoint_propagates_labels_better_than_copying():
    """checkpoints/coordgan-faces on 20 unseen aligned faces, 2 references: measured 32.9 / 38.4
    mIoU against 23.7 / 22.3 for copying the labels (the full evaluation is in the README)."""
    import os

    import synthetic

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints", "coordgan-faces")
    pipe = CoordGANPipeline.from_pretrained(folder)
    batch = synthetic.sample("faces", 22, 64, seed=2024)
    n = synthetic.category("faces").num_classes
    images = [Image.fromarray(x) for x in batch.image]
    truth = list(batch.labels[2:])
    margins = []
    for ref in (0, 1):
        predicted = pipe.propagate_labels(images[ref], batch.labels[ref], images[2:])
        assert [p.shape for p in predicted] == [t.shape for t in truth]
        copied = [copy_baseline(batch.labels[ref], t.shape) for t in truth]
        margins.append(miou(predicted, truth, n) - miou(copied, truth, n))
    assert np.mean(margins) > 5, margins
