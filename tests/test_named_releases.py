"""Named releases (`official:NAME`) of CoordGAN and GANgealing: download once, convert once into a
cache folder, load from it afterwards; offline and not cached, a message with the command to run
once online. Nothing is downloaded: the download function is replaced by one that returns files
made here (real key names and shapes, every tensor one stored zero expanded to its shape)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError

import coordgan.convert_official as coordgan_releases
import gangealing.convert_official as gangealing_releases
from coordgan import CONFIGS, CoordGANGenerator, CoordGANOfficialEncoder, CoordGANPipeline
from demos import models

GANGEALING_KEYS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gangealing-official"


def zeros_like_layout(layout: dict) -> dict:
    return {k: torch.zeros(1).expand(shape) if shape else torch.zeros(()) for k, shape in layout.items()}


@pytest.fixture(scope="module")
def coordgan_files(tmp_path_factory):
    """An authors'-layout train.py file (128 px) and a train-encoder.py file, built from our key map."""
    folder = tmp_path_factory.mktemp("coordgan-release")
    key_map = coordgan_releases.generator_key_map(CoordGANGenerator(**CONFIGS["celebA_128"]))
    g_ema = zeros_like_layout({k: shape for k, (shape, _) in key_map.items()})
    for k, (_, targets) in key_map.items():
        if targets[0][0] == "constant":
            g_ema[k] = targets[0][1]
    encoder = CoordGANOfficialEncoder().state_dict()
    e = {k: v if k.endswith("Blur.kernel") else torch.zeros(1).expand(v.shape) for k, v in encoder.items()}
    torch.save({"g": g_ema, "d": {}, "g_ema": g_ema, "g_optim": {}, "d_optim": {}, "d_patch": {}}, folder / "generator.pt")
    torch.save({"g": g_ema, "e": e, "g_ema": g_ema, "g_optim": {}}, folder / "encoder.pt")
    return folder


def test_coordgan_release_downloads_converts_once_and_loads(coordgan_files, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_download(repo_id, filename, repo_type=None):
        calls.append((repo_id, filename, repo_type))
        return str(coordgan_files / ("encoder.pt" if filename.endswith("_enc.pt") else "generator.pt"))

    monkeypatch.setattr(coordgan_releases, "hf_hub_download", fake_download)
    monkeypatch.setattr(coordgan_releases, "CONVERTED_CACHE", tmp_path / "converted")
    pipe = coordgan_releases.load_release("official:celebA")
    assert calls == [("JitengMu/CVPR2022_CoordGAN_release", "coordgan_checkpoints/celebA_128.pt", "dataset"),
                     ("JitengMu/CVPR2022_CoordGAN_release", "coordgan_checkpoints/celebA_enc.pt", "dataset")]
    assert isinstance(pipe.encoder, CoordGANOfficialEncoder) and pipe.generator.config.coordinate_grid == "linspace"
    folder = tmp_path / "converted" / "coordgan" / "celebA"
    assert (folder / "model_index.json").is_file() and not list(folder.parent.glob("*.tmp*"))
    # cached: no download, the converted folder loads; the app resolves the same name
    again = models.load(models.SPECS["coordgan"], "official:celebA", env={})
    assert len(calls) == 2 and isinstance(again, CoordGANPipeline) and again.generator.resolution == 128
    # afhqcat has no released encoder: a generator-only pipeline
    assert coordgan_releases.load_release("afhqcat").encoder is None and calls[-1][1] == "coordgan_checkpoints/afhqcat_128.pt"
    # the command line takes the name as well, and lists the names
    assert coordgan_releases.main(["official:stanfordcar", "--output", str(tmp_path / "out")]) == 0
    assert calls[-1][1] == "coordgan_checkpoints/stanfordcar_enc.pt" and (tmp_path / "out" / "model_index.json").is_file()
    assert coordgan_releases.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"official:{name}" in listed for name in ("celebA", "celebA-512", "stanfordcar", "afhqcat")) and "unverified" in listed


def test_coordgan_release_offline_says_what_to_run(tmp_path, monkeypatch, capsys):
    def offline(repo_id, filename, repo_type=None):
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(coordgan_releases, "CONVERTED_CACHE", tmp_path / "converted")
    monkeypatch.setattr(coordgan_releases, "hf_hub_download", offline)
    with pytest.raises(ValueError, match=r"official:celebA is not in the Hugging Face cache and cannot be downloaded here .*"
                                         r"run once with network access: python -m coordgan.convert_official official:celebA --output DIR"):
        coordgan_releases.load_release("official:celebA")
    message = models.load(models.SPECS["coordgan"], "official:celebA", env={}).message
    assert len(message.splitlines()) == 2 and "python -m coordgan.convert_official official:celebA" in message
    assert coordgan_releases.main(["official:nope", "--output", str(tmp_path / "out")]) == 2
    assert "unknown CoordGAN release 'nope'; the named releases are official:celebA" in capsys.readouterr().err
    monkeypatch.undo()  # the real hf_hub_download, with the tests' HF_HUB_OFFLINE=1: no network is tried
    if not (Path(coordgan_releases.CONVERTED_CACHE) / "coordgan" / "afhqcat").exists():
        with pytest.raises(ValueError, match="run once with network access"):
            coordgan_releases.download_release("afhqcat")


# ------------------------------------------------------------------ GANgealing
@pytest.mark.skipif(not GANGEALING_KEYS.is_dir(), reason=f"GANgealing official key lists not found at {GANGEALING_KEYS} (they live outside the repository)")
def test_gangealing_release_downloads_converts_once_and_loads(tmp_path, monkeypatch):
    def layout(name):
        entries = json.loads((GANGEALING_KEYS / name).read_text())
        return {e["key"]: tuple(e["shape"]) for e in entries.get("keys") or entries["entries"]}

    release = tmp_path / "celeba_release.pt"
    torch.save({"g_ema": zeros_like_layout(layout("keys_g_ema_128_celeba.json")), "t_ema": zeros_like_layout(layout("keys_t_ema_unimodal_K1.json")),
                "ll": zeros_like_layout(layout("keys_ll_K1_ndirs512_celeba.json"))}, release)
    urls = []

    def fake_download(url, path):
        urls.append(url)
        shutil.copyfile(release, path)

    monkeypatch.setattr(gangealing_releases, "download_url", fake_download)
    monkeypatch.setattr(gangealing_releases, "DOWNLOAD_CACHE", tmp_path / "downloads")
    monkeypatch.setattr(gangealing_releases, "CONVERTED_CACHE", tmp_path / "converted")
    with pytest.raises(ValueError, match=r"official:celeba is not in the cache .* and this machine is offline \(HF_HUB_OFFLINE=1\); "
                                         r"run once with network access: python -m gangealing.convert_official official:celeba --output DIR"):
        gangealing_releases.load_release("official:celeba")  # the tests run with HF_HUB_OFFLINE=1
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    pipe = gangealing_releases.load_release("official:celeba")
    assert urls == ["https://efrosgans.eecs.berkeley.edu/gangealing/pretrained/celeba.pt"]
    assert (tmp_path / "downloads" / "celeba.pt").is_file() and (tmp_path / "converted" / "gangealing" / "celeba" / "model_index.json").is_file()
    assert pipe.transformer.config.similarity_iters == 1 and pipe.target.config.inject_index == 6  # the authors' celeba settings
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # cached: offline is fine, nothing is downloaded again
    loaded = models.load(models.SPECS["gangealing"], "official:celeba", env={})
    assert not isinstance(loaded, models.MissingModel), loaded
    assert urls == ["https://efrosgans.eecs.berkeley.edu/gangealing/pretrained/celeba.pt"]
    message = models.load(models.SPECS["gangealing"], "official:dog", env={}).message
    assert len(message.splitlines()) == 2 and "python -m gangealing.convert_official official:dog --output DIR" in message
    assert gangealing_releases.main(["--list"]) == 0
