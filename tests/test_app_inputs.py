"""demos/inputs.py and demos/models.py without a server: conversions, refusals, model resolution."""

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import synthetic
from demos import inputs, models, video


def save(tmp_path, im, name="x.png", **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return str(path)


def test_non_images_and_sizes_are_refused_with_what_to_do(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="'notes.png' is not an image file. Upload the reference image as PNG"):
        inputs.load_rgb(str(text), "reference image")
    with pytest.raises(gr.Error, match="No query image given: upload one"):
        inputs.load_rgb(None, "query image")
    with pytest.raises(gr.Error, match="4097x16 pixels; the limit is 4096 pixels a side. Resize it"):
        inputs.load_rgb(save(tmp_path, Image.new("L", (4097, 16))))
    assert inputs.load_rgb(save(tmp_path, Image.new("1", (4096, 4096)))).size == (4096, 4096)  # the largest photo taken
    with pytest.raises(gr.Error, match="15x64 pixels; it needs at least 16 pixels a side"):
        inputs.load_rgb(save(tmp_path, Image.new("RGB", (15, 64))))
    truncated = tmp_path / "cut.png"
    full = save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    truncated.write_bytes(open(full, "rb").read()[:400])
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        inputs.load_rgb(str(truncated))


def test_modes_are_converted_to_rgb(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    assert inputs.load_rgb(save(tmp_path, rgb)).mode == "RGB"
    grey = inputs.load_rgb(save(tmp_path, rgb.convert("L"), "g.png"))
    assert grey.mode == "RGB" and np.array_equal(np.asarray(grey)[..., 0], np.asarray(rgb.convert("L")))
    cmyk = inputs.load_rgb(save(tmp_path, rgb.convert("CMYK"), "c.jpg", quality=100))
    assert cmyk.mode == "RGB" and np.abs(np.asarray(cmyk, int) - np.asarray(rgb, int)).mean() < 8
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert np.array_equal(np.asarray(inputs.load_rgb(save(tmp_path, pal, "p.png"))), np.asarray(pal.convert("RGB")))
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[:10] = [255, 0, 0, 255]  # opaque red over transparent: transparent becomes white
    out = np.asarray(inputs.load_rgb(save(tmp_path, Image.fromarray(rgba), "a.png")))
    assert out[0, 0].tolist() == [255, 0, 0] and out[-1, -1].tolist() == [255, 255, 255]
    deep = Image.fromarray((np.arange(20 * 24, dtype=np.int32).reshape(20, 24) * 100), mode="I")
    out = np.asarray(inputs.load_rgb(save(tmp_path, deep, "i.png")))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_label_maps_index_and_palette_and_refusals(tmp_path):
    labels = synthetic.sample("faces", 1, resolution=32, seed=3).labels[0]
    n = synthetic.category("faces").num_classes
    index = save(tmp_path, Image.fromarray(labels.astype(np.uint8), mode="L"), "index.png")
    assert np.array_equal(inputs.load_label_map(index, n), labels)
    indexed_p = Image.fromarray(labels.astype(np.uint8), mode="P")
    indexed_p.putpalette([v for c in synthetic.palette(256) for v in c])
    assert np.array_equal(inputs.load_label_map(save(tmp_path, indexed_p, "p.png"), n), labels)
    colour = save(tmp_path, Image.fromarray(synthetic.colorize(labels, n)), "colour.png")
    assert np.array_equal(inputs.load_label_map(colour, n), labels)
    rgba = np.concatenate([synthetic.colorize(labels, n), np.full((*labels.shape, 1), 255, np.uint8)], -1)
    rgba[:4, :, :] = [1, 2, 3, 0]  # transparent pixels in any colour are background
    expected = labels.copy()
    expected[:4] = 0
    assert np.array_equal(inputs.load_label_map(save(tmp_path, Image.fromarray(rgba), "rgba.png"), n), expected)
    bad = synthetic.colorize(labels, n).copy()
    bad[5, 5] = [1, 2, 3]
    with pytest.raises(gr.Error,
                       match=r"1 pixels in colours that are not class colours of this model \(e.g. #010203\)"):
        inputs.load_label_map(save(tmp_path, Image.fromarray(bad), "bad.png"), n)
    unknown = labels.astype(np.uint8).copy()
    unknown[0, 0] = 200
    with pytest.raises(gr.Error, match="contains class ids 200 but this model knows classes 0-11"):
        inputs.load_label_map(save(tmp_path, Image.fromarray(unknown, mode="L"), "unknown.png"), n)


def test_painted_layers_snap_to_the_palette():
    n = 12
    pal = synthetic.palette(n)
    layer = np.zeros((20, 20, 4), np.uint8)
    layer[2:8, 2:8] = [*pal[3], 255]
    layer[10:12, 10:12] = [*(pal[5].astype(int) + 6).clip(0, 255), 200]  # anti-aliased edge of a stroke
    layer[15, 15] = [*pal[7], 40]  # faint stroke edge: stays background
    painted = inputs.painted_labels({"background": None, "layers": [layer], "composite": None}, n)
    labels = inputs.colors_to_labels(painted, n)
    assert (labels[2:8, 2:8] == 3).all() and (labels[10:12, 10:12] == 5).all()
    assert labels[15, 15] == 0 and (labels == 0).sum() == 400 - 36 - 4
    assert inputs.painted_labels({"background": None, "layers": [np.zeros((4, 4, 4), np.uint8)],
                                  "composite": None}, n) is None
    merged = inputs.merged_layers({"layers": [layer]})
    assert merged.shape == (20, 20, 4) and np.array_equal(merged[3, 3], layer[3, 3])


def test_video_length_is_limited(tmp_path):
    frames = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(5)]
    short = tmp_path / "short.gif"
    frames[0].save(short, save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded, seconds = video.load_video_frames(str(short))
    assert len(loaded) == 5 and seconds == pytest.approx(0.1) and loaded[0].mode == "RGB"
    long = tmp_path / "long.gif"
    frames[0].save(long, save_all=True, append_images=frames[1:], duration=3000, loop=0)
    with pytest.raises(gr.Error, match="longer than 10 seconds; trim it"):
        video.load_video_frames(str(long))
    wide = tmp_path / "wide.gif"
    Image.new("RGB", (1100, 32)).save(wide)
    with pytest.raises(gr.Error, match="videos may have at most 1024 pixels a side"):
        video.load_video_frames(str(wide))
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00" * 64)
    with pytest.raises(gr.Error, match="is not a video file"):
        video.load_video_frames(str(mp4))


def test_seeds_and_fractions():
    assert inputs.seed(5.0, "structure seed") == 5
    for bad in (None, -1, 0.5, 2**31):
        with pytest.raises(gr.Error, match="The structure seed must be a whole number"):
            inputs.seed(bad, "structure seed")
    with pytest.raises(gr.Error, match="truncation must be between 0 and 1"):
        inputs.fraction(1.5, "truncation")


def test_model_resolution_missing_broken_and_explicit(tmp_path):
    spec = models.SPECS["coordgan"]
    missing = models.load(spec, str(tmp_path / "nowhere"), env={})
    assert isinstance(missing, models.MissingModel) and not missing
    assert ("No coordgan checkpoint at" in missing.message
            and "--coordgan DIR_OR_HUB_REPO or set COORDGAN_MODEL" in missing.message)
    with pytest.raises(gr.Error, match="Train one: `python train/coordgan.py"):
        models.require(missing)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    assert "Could not load the coordgan checkpoint" in models.load(spec, str(broken), env={}).message
    from coordgan import CoordGANPipeline, tiny_random_pipeline

    tiny_random_pipeline(seed=1).save_pretrained(tmp_path / "tiny")
    loaded = models.load(spec, None, env={"COORDGAN_MODEL": str(tmp_path / "tiny")})  # the environment variable
    assert isinstance(loaded, CoordGANPipeline) and not loaded.generator.training
    assert models.require(loaded) is loaded


def test_model_sources_dispatch_folder_official_file_and_hub_id(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakePipeline:
        @classmethod
        def from_pretrained(cls, source):
            calls.append(("from_pretrained", source))
            return cls()

        def to(self, device):
            return self

    def from_official_checkpoint(path):  # the converter module's function (pipelines never import their converter)
        calls.append(("from_official_checkpoint", path))
        return FakePipeline()

    monkeypatch.setitem(sys.modules, "fakepkg", types.SimpleNamespace(FakePipeline=FakePipeline))
    monkeypatch.setitem(sys.modules, "fakepkg.convert_official",
                        types.SimpleNamespace(from_official_checkpoint=from_official_checkpoint))
    spec = models.ModelSpec("fakepkg", "FakePipeline", "FAKE_MODEL", "checkpoints/fake", "train it")
    release = tmp_path / "cat.pt"
    release.write_bytes(b"")
    assert isinstance(models.load(spec, str(release), env={}), FakePipeline)
    assert isinstance(models.load(spec, None, env={"FAKE_MODEL": str(tmp_path)}), FakePipeline)
    assert isinstance(models.load(spec, "someone/fake-faces", env={}), FakePipeline)  # a Hub repo id
    assert calls == [("from_official_checkpoint", str(release)), ("from_pretrained", str(tmp_path)),
                     ("from_pretrained", "someone/fake-faces")]
    # the bundled default is never mistaken for a Hub repo id
    assert "No fakepkg checkpoint at" in models.load(spec, None, env={}).message and len(calls) == 3


def test_official_files_reach_the_importer_with_the_spec_options(tmp_path):
    """--cocosnet takes the authors' folder or its latest_net_G.pth (options from the ModelSpec, not a
    TypeError shown as "missing model"); --coordgan, which has no importer, says a file is not a folder."""
    import torch

    authors = tmp_path / "celebahq"
    authors.mkdir()
    torch.save({"not.a.key": torch.zeros(1)}, authors / "latest_net_G.pth")
    spec = models.SPECS["cocosnet"]
    alone = models.load(spec, str(authors / "latest_net_G.pth"), env={}).message
    assert "latest_net_Corr.pth" in alone and "does not exist" in alone and "TypeError" not in alone
    torch.save({"not.a.key": torch.zeros(1)}, authors / "latest_net_Corr.pth")
    for source in (authors, authors / "latest_net_G.pth"):
        message = models.load(spec, str(source), env={}).message
        assert message.startswith(f"Could not load the cocosnet checkpoint `{source}`"), message
        assert "is not CoCosNet's correspondence network" in message and "TypeError" not in message
        assert len(message.splitlines()) <= 2
    coordgan_file = models.load(models.SPECS["coordgan"], str(authors / "latest_net_G.pth"), env={}).message
    assert "is a file, but coordgan loads a save_pretrained folder" in coordgan_file


def test_zerogpu_decorator_only_when_spaces_imports(monkeypatch):
    import sys
    import types

    import torch

    decorated = []

    def gpu(fn):
        decorated.append(fn.__name__)
        return fn

    def handler():
        return torch.is_inference_mode_enabled()

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    plain = models.inference(handler)
    assert plain() is True and decorated == []
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    on_zero_gpu = models.inference(handler)
    assert on_zero_gpu() is True and decorated == ["handler"]
