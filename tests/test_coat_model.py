"""COAT networks and pipeline: shapes, the n switch, save/load, input checks."""

import numpy as np
import pytest
import torch
from PIL import Image

from coat import COATPipeline, build_pipeline, coat_forward, network_configs, tiny_random_pipeline
from coat.losses import latent_regularizer, reconstruction_loss
from coat.model import COATDecoder, COATEncoder, COATModulationEncoder, decoder_layer_resolutions, layer_scales


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return tiny_random_pipeline(seed=0)


def images(seed, b=2, r=64):
    return torch.rand(b, 3, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes(pipe):
    x, y = images(0), images(1)
    out = coat_forward(pipe.encoder, pipe.modulation_encoder, pipe.decoder, x, y, 3)
    assert out.image.shape == (2, 3, 64, 64)
    assert [tuple(f.shape) for f in out.content_features] == [(2, 51, 32, 32), (2, 67, 16, 16), (2, 99, 8, 8)]
    # tiny's cell_colour: the last three channels of F^l are the cell's mean colour
    torch.testing.assert_close(out.style_features[1][:, -3:], torch.nn.functional.avg_pool2d(y, 4))
    assert [tuple(k.shape[1:]) for k in out.style_keys] == [(64, 32, 32), (64, 16, 16), (64, 8, 8)]
    assert [m.size for m in out.matches] == [(32, 32), (16, 16), (8, 8)]
    assert len(out.styles) == pipe.num_layers == 9
    assert out.styles[0][0].shape == (2, 64) and out.styles[-1][1].shape == (2, 64, 32, 32)
    assert torch.isfinite(reconstruction_loss(out.image, x)) and torch.isfinite(latent_regularizer(out.styles))


def test_layer_layout():
    assert decoder_layer_resolutions(64, 4) == [4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert decoder_layer_resolutions(256, 4) == [4] + [r for r in (8, 16, 32, 64, 128, 256) for _ in range(2)]
    assert layer_scales([4, 8, 8, 16, 16, 32, 32, 64, 64], [32, 16, 8]) == [2, 2, 2, 1, 1, 0, 0, 0, 0]
    enc, mod, dec = network_configs("paper")
    assert len(mod["layer_resolutions"]) == 13 and mod["feature_sizes"] == (64, 32, 16)


def test_n_switches_which_layers_see_content(pipe):
    """Layers k < n read only the content maps, layers k >= n only the aligned maps (and masks)."""
    mod = pipe.modulation_encoder
    g = torch.Generator().manual_seed(2)
    content = [torch.randn(1, c, s, s, generator=g) for c,
               s in zip(mod.config.feature_channels, mod.config.feature_sizes)]
    aligned = [torch.randn_like(c) for c in content]
    masks = [torch.ones_like(c[:, :1]) for c in content]
    for n in (0, 4, 9):
        base = mod(content, aligned, masks, n)
        changed_content = mod([c + 1 for c in content], aligned, masks, n)
        changed_aligned = mod(content, [a + 1 for a in aligned], masks, n)
        for k in range(9):
            sees_content = not torch.equal(base[k][0], changed_content[k][0])
            sees_aligned = not torch.equal(base[k][0], changed_aligned[k][0])
            assert sees_content == (k < n) and sees_aligned == (k >= n), (n, k)
    # through the pipeline: with n = all layers the style image has no influence
    x, y, y2 = images(3, 1), images(4, 1), images(5, 1)
    with torch.no_grad():
        a = pipe.run(x, y, n=9).image
        b = pipe.run(x, y2, n=9).image
        c = pipe.run(x, y2, n=0).image
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = COATPipeline.from_pretrained(tmp_path)
    assert loaded.default_content_layers == pipe.default_content_layers == 3
    x, y = images(6, 1), images(7, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.run(x, y).image, pipe.run(x, y).image)
    assert (tmp_path / "decoder" / "diffusion_pytorch_model.safetensors").is_file()


def test_transfer_and_match_points(pipe):
    rng = np.random.default_rng(0)
    content = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    style = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = pipe.transfer(content, style, n=2)
    assert out.image.size == (70, 50) and out.n == 2 and len(out.matches) == 3
    for m in out.matches:
        assert m.content_points.shape == m.style_points.shape and m.content_points.shape[1] == 2
    pts = np.array([[0.0, 0.0], [69.0, 49.0], [35.0, 20.0]])  # pixel indices
    same = pipe.match_points(content, content, pts)
    assert same.points.shape == (3, 2) and same.confidence.shape == (3,) and same.heatmaps.shape == (3, 32, 32)
    assert np.allclose(same.confidence, 1.0)  # an image against itself: every cell is its own MNN
    cells = np.floor((pts + 0.5) * [32 / 70, 32 / 50])  # the point's own cell centre comes back
    assert np.allclose(same.points, (cells + 0.5) * [70 / 32, 50 / 32] - 0.5, atol=1e-4)
    assert (same.heatmaps.reshape(3, -1).argmax(1) == cells[:, 1] * 32 + cells[:, 0]).all()  # the heat peaks there too
    other = pipe.match_points(content, style, pts)
    assert ((other.confidence >= 0) & (other.confidence <= 1)).all()
    assert ((other.points >= -0.5) & (other.points <= 63.5)).all()


def test_bad_inputs(pipe):
    x = images(8, 1)
    with pytest.raises(ValueError, match="n \\(content layers\\)"):
        pipe.run(x, x, n=10)
    with pytest.raises(ValueError, match="n \\(content layers\\)"):
        pipe.run(x, x, n=-1)
    with pytest.raises(ValueError, match="content layers"):
        pipe.modulation_encoder([], [], [], 99)
    with pytest.raises(ValueError, match="content must be a batch"):
        pipe.run(images(8, 1, 32), x)
    with pytest.raises(ValueError, match="same shape"):
        coat_forward(pipe.encoder, pipe.modulation_encoder, pipe.decoder, x, images(9, 2), 3)
    with pytest.raises(ValueError, match="too small"):
        pipe.transfer(Image.new("RGB", (4, 4)), Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match="uint8"):
        pipe.transfer(np.zeros((64, 64, 3), np.float32), Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match="inside image A"):
        pipe.match_points(Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64)), [[70.0, 3.0]])
    with pytest.raises(ValueError, match="styles"):
        pipe.decoder([])
    with pytest.raises(ValueError, match="feature_strides"):
        COATEncoder(channels=(8, 8), feature_strides=(2, 4))
    with pytest.raises(ValueError, match="channels"):
        COATDecoder(resolution=64, channels=(8, 8))
    with pytest.raises(ValueError, match="unknown config"):
        build_pipeline("huge")
    with pytest.raises(ValueError, match="one entry"):
        COATModulationEncoder(feature_channels=(8,), feature_sizes=(4, 2))
