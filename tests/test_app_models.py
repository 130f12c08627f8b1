"""Which weights the app runs (demos/models.py, issue #23): on a Space (SPACE_ID) or with
--models official each tab defaults to the authors' release; flags and *_MODEL variables still
win; a release that cannot arrive falls back to the bundled model with a visible note; every tab
can say in one line which weights it runs, and describe_all gives the same as JSON (/models).
Offline (the tests' HF_HUB_OFFLINE=1), every cache in tmp_path: nothing is downloaded."""

import json

import pytest

import cocosnet.convert_official as cocosnet_converter
import cocosnet.releases as cocosnet_releases
import coordgan.convert_official as coordgan_converter
import coordgan.releases as coordgan_releases
import gangealing.convert_official as gangealing_converter
import gangealing.releases as gangealing_releases
from demos import models


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    for converter in (coordgan_converter, gangealing_converter, cocosnet_converter):
        monkeypatch.setattr(converter, "CONVERTED_CACHE", tmp_path / "converted")
    monkeypatch.setattr(coordgan_releases, "DOWNLOAD_CACHE", tmp_path / "hub")
    monkeypatch.setattr(gangealing_releases, "DOWNLOAD_CACHE", tmp_path / "gangealing")
    monkeypatch.setattr(cocosnet_releases, "DOWNLOAD_CACHE", tmp_path / "cocosnet")
    return tmp_path


def test_the_mode_follows_space_id():
    assert models.default_mode({"SPACE_ID": "x/y"}) == "official" and models.default_mode({}) == "bundled"
    with pytest.raises(ValueError, match="mode must be one of bundled, official"):
        models.load(models.SPECS["coat"], mode="authors")


def test_a_space_offline_starts_on_the_bundled_models_and_says_why(empty_caches, capsys):
    pipelines = models.load_all(env={"SPACE_ID": "x/y"})
    log = capsys.readouterr().err
    for name, release in models.RELEASE_DEFAULTS.items():
        pipe = pipelines[name]
        assert not isinstance(pipe, models.MissingModel), pipe.message  # the bundled model answers
        line = models.describe(name, pipe)
        fallback = f"⚠️ The authors' release `{release}` could not be loaded "
        assert line.startswith(fallback + f"({release}") and "could not be loaded (Could not load" not in line
        assert (
            "offline" in line
            and "this tab runs the bundled model instead. **Weights:** the bundled toy model: " in line
        )
        assert (
            f"{name}: {models.SPECS[name].default} loaded in " in log
            and f"{name}: The authors' release `{release}`" in log
        )
    assert models.describe("coat", pipelines["coat"]).startswith(
        "**Weights:** the bundled toy model: 64 px, trained here on "
        "synthetic faces: try a synthetic example; no authors' release"
    )
    # the second GANgealing model has no bundled stand-in: the tab that offers it says why it is missing
    cat = pipelines["gangealing_cat"]
    assert isinstance(cat, models.MissingModel) and "python -m gangealing.convert_official official:cat" in cat.message
    answer = json.loads(json.dumps(models.describe_all(pipelines)))  # what /models returns
    assert {k: v["kind"] for k, v in answer.items()} == {
        "coordgan": "bundled",
        "gangealing": "bundled",
        "cocosnet": "bundled",
        "coat": "bundled",
        "gangealing_cat": "missing",
    }
    assert "official:celeba" in answer["gangealing"]["note"] and answer["gangealing"]["resolution"] == 32
    assert answer["coordgan"]["seconds"] > 0 and answer["coat"]["note"] == ""


def test_a_converted_release_is_described_and_flags_still_win(empty_caches, tmp_path):
    from gangealing import tiny_random_pipeline

    tiny_random_pipeline().save_pretrained(
        gangealing_converter.release_folder("celeba")
    )  # as if converted at an earlier start
    pipe = models.load(models.SPECS["gangealing"], mode="official", env={})
    assert pipe.weights["kind"] == "release" and pipe.weights["source"] == "official:celeba"
    assert models.describe("gangealing", pipe) == (
        "**Weights:** the authors' release: GANgealing `official:celeba`: 128 px generator, "
        "trained on In-The-Wild CelebA faces (GANgealing (Peebles et al., CVPR 2022))."
    )
    # an explicit folder (flag or GANGEALING_MODEL) wins over the release default
    folder = tmp_path / "mine"
    tiny_random_pipeline().save_pretrained(folder)
    for pipe in (
        models.load(models.SPECS["gangealing"], str(folder), env={}, mode="official"),
        models.load(models.SPECS["gangealing"], None, env={"GANGEALING_MODEL": str(folder)}, mode="official"),
    ):
        assert pipe.weights == dict(pipe.weights, kind="folder or repo", source=str(folder), note="")
        assert models.describe("gangealing", pipe).startswith(f"**Weights:** `{folder}` (folder or repo, ")
    # a named GANgealing model also means no second (cat) model is added
    assert "gangealing_cat" not in models.load_all({"gangealing": str(folder)}, env={}, mode="official")


def test_bundled_mode_names_how_to_get_the_real_models():
    pipe = models.load(models.SPECS["coordgan"], env={})
    line = models.describe("coordgan", pipe)
    assert line.startswith(
        "**Weights:** the bundled toy model: 64 px, trained here on synthetic faces: try a synthetic example; "
        "real photos need the authors' models: run the app with `--models official`"
    )
    assert "`--coordgan official:NAME`" in line and "python -m coordgan.convert_official --list" in line
    missing = models.MissingModel("No coordgan checkpoint at `x`.")
    assert models.describe("coordgan", missing) == "⚠️ **No model loaded.** No coordgan checkpoint at `x`."
