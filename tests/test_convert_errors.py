"""Bad files given to the importers of the authors' checkpoints fail cleanly: the library raises a
ValueError of one or two lines (the problem, then what to pass instead), the commands
`python -m gangealing.convert_official` and `python -m cocosnet.convert_official` print it and exit 2
(no traceback, no torch weights_only essay), and the app's --gangealing / --cocosnet / --coordgan
paths (demos/models.py) show it as the tab's "model not loaded" message.

The files are built in tmp_path. Real key lists come from the fixtures' key files
(../shared/fixtures/*-official/keys_*.json); their tensors are one stored float expanded to the real
shape (torch.save keeps the view), so a 150 M-value CoCosNet pair is a few kB on disk.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cocosnet.convert_official import main as cocosnet_main
from demos import models
from gangealing.convert_official import main as gangealing_main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "cocosnet-official").is_dir() or not (FIXTURES / "gangealing-official").is_dir(),
                                    reason=f"official key lists not found under {FIXTURES}")


def real_state(file: Path) -> dict:
    """A state_dict with the fixture's keys and shapes, every tensor a zero expanded to its shape."""
    entries = json.loads(file.read_text())
    entries = entries.get("keys") or entries["entries"]
    return {e["key"]: torch.zeros(1).expand(e["shape"]) if e["shape"] else torch.zeros(()) for e in entries}


def cocosnet_pair(folder: Path, config: str = "celebahq") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for net in ("G", "Corr"):
        torch.save(real_state(FIXTURES / "cocosnet-official" / f"keys_{config}_{net}.json"), folder / f"latest_net_{net}.pth")
    return folder


def truncated(path: Path) -> Path:
    torch.save({"g_ema": {"style.1.weight": torch.randn(64, 64)}, "t_ema": {}, "ll": {}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def assert_clean(text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert 1 <= len(lines) <= 2, text
    assert "Traceback" not in text and "weights_only" not in text and "WeightsUnpickler" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def run(main, argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ")
    return err


# ------------------------------------------------------------------ files every importer refuses
def common_bad_files(tmp_path: Path) -> dict:
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    pickled = tmp_path / "code.pt"
    torch.save({"g_ema": {}, "t_ema": {}, "ll": {}, "args": Path("/")}, pickled)  # a class outside the allowlist
    return {
        "missing": (tmp_path / "missing.pt", "does not exist"),
        "folder": (tmp_path, None),  # checked per importer
        "text": (text, "is not a PyTorch checkpoint"),
        "empty": (empty, "is empty"),
        "truncated": (truncated(tmp_path / "cut.pt"), "is truncated or corrupt"),
        "pickled code": (pickled, "holds pickled Python objects (pathlib.PosixPath)"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "empty", "truncated", "pickled code"])
def test_gangealing_cli_refuses_non_checkpoints(tmp_path, capsys, case):
    path, needle = common_bad_files(tmp_path)[case]
    err = run(gangealing_main, [str(path), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, needle, "Pass one of the authors' released GANgealing files")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "text", "empty", "truncated", "pickled code"])
def test_cocosnet_cli_refuses_non_checkpoints(tmp_path, capsys, case):
    path, needle = common_bad_files(tmp_path)[case]
    err = run(cocosnet_main, [str(path), "--correspondence", str(path), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, needle, "Pass the authors' CoCosNet checkpoint folder")
    assert not (tmp_path / "out").exists()


def test_truncated_at_any_length_is_a_value_error(tmp_path):
    """A checkpoint cut anywhere (or with a damaged byte) never escapes as another exception."""
    from cocosnet.convert_official import load_official_state_dict
    from gangealing.convert_official import read_checkpoint

    whole = tmp_path / "whole.pt"
    torch.save({"g_ema": {"style.1.weight": torch.randn(16, 16)}, "t_ema": {}, "ll": {}}, whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pt"
    for n in (1, 8, 30, 100, len(data) // 3, len(data) - 200, len(data) - 1):
        cut.write_bytes(data[:n])
        for reader in (read_checkpoint, load_official_state_dict):
            with pytest.raises(ValueError):
                reader(cut)
    for legacy in (False, True):
        torch.save({"a": torch.randn(8)}, whole, _use_new_zipfile_serialization=not legacy)
        data = whole.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load_official_state_dict(cut)


# ------------------------------------------------------------------ GANgealing: other models, keys, shapes
@needs_fixtures
def test_gangealing_cli_names_another_models_checkpoint(tmp_path, capsys):
    cocosnet_file = cocosnet_pair(tmp_path / "celebahq") / "latest_net_G.pth"
    err = run(gangealing_main, [str(cocosnet_file), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "is a single state_dict (fc.weight, fc.bias, head_0.conv_0.bias, head_0.conv_0.weight_orig, ... (193 in all))",
                 "CoCosNet's latest_net_G.pth")
    coordgan = tmp_path / "coordgan_300000.pt"  # the layout of the official CoordGAN train.py
    torch.save({"g": {}, "d": {}, "g_ema": {}, "g_optim": {}, "d_optim": {}, "d_patch": {}}, coordgan)
    err = run(gangealing_main, [str(coordgan), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "generator-only training checkpoint", "missing top-level keys ['ll', 't_ema']", "unknown top-level keys ['d_optim', 'd_patch', 'g_optim']")
    err = run(gangealing_main, [str(tmp_path / "celebahq"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "is a folder, not a checkpoint file")


@needs_fixtures
def test_gangealing_cli_names_wrong_keys_and_shapes(tmp_path, capsys):
    g_ema = real_state(FIXTURES / "gangealing-official" / "keys_g_ema_128_celeba.json")
    ll = real_state(FIXTURES / "gangealing-official" / "keys_ll_K1_ndirs512_celeba.json")
    renamed = dict(g_ema)
    renamed["conv1.noise.strength"] = renamed.pop("conv1.noise.weight")
    del renamed["to_rgb1.bias"]
    torch.save({"g_ema": renamed, "t_ema": {}, "ll": ll, "args": argparse.Namespace(inject=6)}, tmp_path / "celeba.pt")
    err = run(gangealing_main, [str(tmp_path / "celeba.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'g_ema' does not match the network this importer builds: unknown keys: conv1.noise.strength; "
                      "missing keys: conv1.noise.weight, to_rgb1.bias", "pass one of the authors' released GANgealing files")
    reshaped = dict(g_ema, **{"style.2.bias": torch.zeros(511)})
    torch.save({"g_ema": reshaped, "t_ema": {}, "ll": ll}, tmp_path / "celeba.pt")
    err = run(gangealing_main, [str(tmp_path / "celeba.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "wrong shapes: style.2.bias (511,) (expected (512,))")
    torch.save({"g_ema": g_ema, "t_ema": {"stns.0.convs.0.0.weight": torch.zeros(3)}, "ll": ll}, tmp_path / "celeba.pt")
    err = run(gangealing_main, [str(tmp_path / "celeba.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'t_ema': cannot read the transformer layout (missing 'stns.0.warp_head.linear.weight')")


def test_gangealing_cli_names_our_own_micro_networks_as_wrong_shapes(tmp_path, capsys):
    """This project's micro networks keep the official key names, not the official widths."""
    from gangealing import tiny_random_pipeline

    pipe = tiny_random_pipeline()
    torch.save({"g_ema": pipe.generator.state_dict(), "t_ema": pipe.transformer.state_dict(), "ll": pipe.target.state_dict()},
               tmp_path / "micro.pt")
    err = run(gangealing_main, [str(tmp_path / "micro.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'g_ema' does not match", "wrong shapes: input.input (1, 32, 4, 4) (expected (1, 512, 4, 4))", "(41 in all)")
    torch.save({"g_ema": {"w": [1, 2]}, "t_ema": {}, "ll": {}}, tmp_path / "lists.pt")
    err = run(gangealing_main, [str(tmp_path / "lists.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'g_ema' must be a state_dict of tensors with data; 1 entries are not: w")


# ------------------------------------------------------------------ CoCosNet: pairs, other models, keys, shapes
@needs_fixtures
def test_cocosnet_cli_names_pair_problems(tmp_path, capsys):
    folder = cocosnet_pair(tmp_path / "deepfashion", "deepfashion")
    out = ["--output", str(tmp_path / "out")]
    # the release is recognised from the files; forcing another config names the shapes that differ
    err = run(cocosnet_main, [str(folder), "--config", "celebahq", *out], capsys)
    assert_clean(err, "wrong shapes: adaptive_model_seg.layer1.0.weight_orig (64, 20, 3, 3) (expected (64, 19, 3, 3))",
                 "wrong shapes: fc.weight (1024, 23, 3, 3) (expected (1024, 22, 3, 3))", "Check --config")
    # swapped files
    err = run(cocosnet_main, ["--generator", str(folder / "latest_net_Corr.pth"), "--correspondence", str(folder / "latest_net_G.pth"), *out], capsys)
    assert_clean(err, "the two files are swapped")
    # half a pair
    (folder / "latest_net_Corr.pth").rename(tmp_path / "elsewhere.pth")
    err = run(cocosnet_main, [str(folder / "latest_net_G.pth"), *out], capsys)
    assert_clean(err, "latest_net_Corr.pth' (beside latest_net_G.pth) does not exist", "--correspondence")
    # a generator file not named like the authors' one
    (folder / "latest_net_G.pth").rename(tmp_path / "generator.pth")
    err = run(cocosnet_main, [str(tmp_path / "generator.pth"), *out], capsys)
    assert_clean(err, "is not named like the authors' latest_net_G.pth", "--correspondence")
    err = run(cocosnet_main, [str(folder), *out], capsys)
    assert_clean(err, "holds no latest_net_G.pth")


@needs_fixtures
def test_cocosnet_cli_names_wrong_keys_and_another_model(tmp_path, capsys):
    folder = cocosnet_pair(tmp_path / "celebahq")
    generator = torch.load(folder / "latest_net_G.pth", weights_only=True)
    generator["head_0.norm_0.scale"] = generator.pop("head_0.norm_0.mlp_shared.1.weight")
    torch.save(generator, folder / "latest_net_G.pth")
    out = ["--output", str(tmp_path / "out")]
    err = run(cocosnet_main, [str(folder), *out], capsys)
    assert_clean(err, "generator (latest_net_G.pth): missing keys: head_0.norm_0.mlp_shared.1.weight; unknown keys: head_0.norm_0.scale")
    # a GANgealing release where the generator should be; a file with unrelated keys as the Corr
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2)}, "t_ema": {}, "ll": {}}, folder / "latest_net_G.pth")
    err = run(cocosnet_main, [str(folder), *out], capsys)
    assert_clean(err, "is a dict of state_dicts (g_ema, ll, t_ema), another model's checkpoint")
    torch.save({"fc.weight": torch.zeros(1)}, folder / "latest_net_G.pth")
    torch.save({"theta.weight": torch.zeros(1)}, folder / "latest_net_Corr.pth")
    err = run(cocosnet_main, [str(folder), *out], capsys)
    assert_clean(err, "is not a CoCosNet correspondence network: it has no 4-d adaptive_model_seg.layer1.0.weight_orig (its keys: theta.weight)")
    tiny = tmp_path / "converted"
    from cocosnet import tiny_random_pipeline

    tiny_random_pipeline().save_pretrained(tiny)
    err = run(cocosnet_main, [str(tiny), *out], capsys)
    assert_clean(err, "is already a converted (save_pretrained) folder")


@needs_fixtures
def test_a_recognised_pair_converts_and_loads_from_the_app_flag(tmp_path, capsys):
    """The success path with real key lists and shapes (values all zero): the CLI writes a folder, and
    --cocosnet takes the authors' folder, its latest_net_G.pth or the converted folder."""
    folder = cocosnet_pair(tmp_path / "celebahqedge", "celebahqedge")
    assert cocosnet_main([str(folder), "--output", str(tmp_path / "out")]) == 0
    assert "(channels input, 15 channels)" in capsys.readouterr().out
    spec = models.SPECS["cocosnet"]
    for source in (folder, folder / "latest_net_G.pth", tmp_path / "out"):
        pipe = models.load(spec, str(source), env={})
        assert not isinstance(pipe, models.MissingModel), pipe.message
        assert pipe.correspondence_network.config.input_channels == 15 and pipe.channel_encoding == "face_edges"


# ------------------------------------------------------------------ the commands themselves, and the app
@pytest.mark.parametrize("module", ["gangealing.convert_official", "cocosnet.convert_official"])
def test_command_exits_2_without_traceback(tmp_path, module):
    text = tmp_path / "latest_net_G.pth"
    text.write_text("not a checkpoint")
    done = subprocess.run([sys.executable, "-m", module, str(text), "--output", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert_clean(done.stderr, "is not a PyTorch checkpoint")
    assert done.stdout == ""


def test_app_flags_show_the_problem_in_two_lines(tmp_path):
    bad = common_bad_files(tmp_path)
    for name in ("gangealing", "cocosnet"):
        spec = models.SPECS[name]
        for case in ("text", "empty", "truncated", "pickled code"):
            path, needle = bad[case]
            message = models.load(spec, str(path), env={}).message
            assert_clean(message, f"Could not load the {name} checkpoint `{path}`", needle, f"Pass --{name} a save_pretrained folder")
    message = models.load(models.SPECS["coordgan"], str(bad["text"][0]), env={}).message
    assert_clean(message, "is a file, but coordgan loads a save_pretrained folder or a Hub repo id")
    message = models.load(models.SPECS["coordgan"], str(tmp_path), env={}).message  # a folder without model_index.json
    assert_clean(message, "Could not load the coordgan checkpoint", "Check it, or pass --coordgan DIR_OR_HUB_REPO")
