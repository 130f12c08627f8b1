"""Bad files given to the three importers of the authors' checkpoints (CoordGAN, GANgealing,
CoCosNet) are said the same way: a ValueError of two lines, the problem then what to pass instead;
the commands `python -m <package>.convert_official` print it after "error: " and exit 2 (no
traceback, no torch weights_only essay), and the app's flags (demos/models.py) show it as the
tab's "model not loaded" message. One table of bad files runs through the three (issue #27, item 3).

The authors' layouts come from tests/helpers/authors_files.py (this project's networks, every tensor
one stored zero expanded to its shape: a few kB on disk), so the table needs no fixtures; the tests
marked needs_fixtures use the fixtures' own key lists (../shared/fixtures/*-official/keys_*.json).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cocosnet.convert_official as cocosnet_converter
import coordgan.convert_official as coordgan_converter
import gangealing.convert_official as gangealing_converter
from demos import models
from tests.helpers.authors_files import authors_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "cocosnet-official").is_dir() or not (FIXTURES / "gangealing-official").is_dir(),
    reason=f"official key lists not found under {FIXTURES}",
)
CONVERTERS = {"coordgan": coordgan_converter, "gangealing": gangealing_converter, "cocosnet": cocosnet_converter}
WHAT_TO_PASS = {
    "coordgan": "Pass a checkpoint written by the authors' CoordGAN train.py",
    "gangealing": "Pass one of the authors' released GANgealing files",
    "cocosnet": "Pass the authors' CoCosNet checkpoint folder",
}
# the network whose keys the key rows change, as each importer names it in its message
NETWORK = {"coordgan": "'g_ema'", "gangealing": "'g_ema'", "cocosnet": "'generator (latest_net_G.pth)'"}


def real_state(file: Path) -> dict:
    """A state_dict with the fixture's keys and shapes, every tensor a zero expanded to its shape."""
    entries = json.loads(file.read_text())
    entries = entries.get("keys") or entries["entries"]
    return {e["key"]: torch.zeros(1).expand(e["shape"]) if e["shape"] else torch.zeros(()) for e in entries}


def cocosnet_pair(folder: Path, config: str = "celebahq") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for net in ("G", "Corr"):
        torch.save(
            real_state(FIXTURES / "cocosnet-official" / f"keys_{config}_{net}.json"), folder / f"latest_net_{net}.pth"
        )
    return folder


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


# ------------------------------------------------------------------ one table of bad files, three importers
def with_keys(package: str, change) -> object:
    """The package's authors' checkpoint with `change(state)` applied to the network NETWORK names."""
    if package == "cocosnet":
        return change(dict(authors_checkpoint("cocosnet-G")))
    ckpt = authors_checkpoint(package)
    ckpt["g_ema"] = change(dict(ckpt["g_ema"]))
    return ckpt


def biases(state: dict) -> list[str]:
    """Keys a row may rename, drop or reshape without hiding the layout: 1-d biases, in file order."""
    return [k for k, v in state.items() if k.endswith(".bias") and v.dim() == 1 and v.shape[0] > 3]


def renamed(state):
    key = biases(state)[0]
    state[key + "_renamed"] = state.pop(key)
    return state


def ten_dropped(state):
    for key in biases(state)[:10]:
        del state[key]
    return state


def reshaped(state):
    state[biases(state)[1]] = torch.zeros(3)
    return state


def save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def bad_file(case: str, package: str, folder: Path) -> Path:
    """The file (or, for CoCosNet's key rows, the latest_net_G.pth beside a good Corr) of one row."""
    path = folder / "release.pt"
    if case == "missing":
        return folder / "missing.pt"
    if case == "text":
        path.write_text("these are my notes\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        data = save(path, authors_checkpoint("gangealing")).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "pickled code":
        save(path, {"g_ema": {}, "t_ema": {}, "ll": {}, "args": Path("/")})  # a class outside the allowlist
    elif case == "safetensors":
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, path)
    elif case == "a GANgealing release":
        save(path, authors_checkpoint("gangealing"))
    elif case == "a CoordGAN train.py file":
        save(path, authors_checkpoint("coordgan"))
    elif case == "CoCosNet's generator":
        save(path, authors_checkpoint("cocosnet-G"))
    else:
        change = {"a renamed key": renamed, "ten missing keys": ten_dropped, "a wrong shape": reshaped}[case]
        obj = with_keys(package, change)
        if package == "cocosnet":
            save(folder / "latest_net_Corr.pth", authors_checkpoint("cocosnet-Corr"))
            return save(folder / "latest_net_G.pth", obj)
        save(path, obj)
    return path


def expected(case: str, package: str, path: Path) -> list[str]:
    """What the first line says, the same words for every importer."""
    state = authors_checkpoint("cocosnet-G") if package == "cocosnet" else authors_checkpoint(package)["g_ema"]
    keys = biases(state)
    return {
        "missing": [f"{str(path)!r} does not exist"],
        "text": [f"{str(path)!r} is not a PyTorch checkpoint (it starts with b'these ar', not a torch.save header)"],
        "empty": [f"{str(path)!r} is empty"],
        "truncated": [f"{str(path)!r} is truncated or corrupt: torch.load could not read it"],
        "pickled code": [f"{str(path)!r} holds pickled Python objects (pathlib.PosixPath) besides tensors"],
        "safetensors": [f"{str(path)!r} is a safetensors file"],
        "a GANgealing release": [f"{str(path)!r} looks like a GANgealing release (g_ema, t_ema, ll), not "],
        "a CoordGAN train.py file": [
            f"{str(path)!r} looks like a CoordGAN train.py checkpoint (g, d, g_ema, g_optim, d_optim, d_patch), not "
        ],
        "CoCosNet's generator": [
            f"{str(path)!r} looks like CoCosNet's generator (a latest_net_G.pth state_dict), not "
        ],
        "a renamed key": [
            f"{NETWORK[package]} does not match the network this importer builds: unknown keys: {keys[0]}_renamed; "
            f"missing keys: {keys[0]}"
        ],
        "ten missing keys": [
            f"{NETWORK[package]} does not match the network this importer builds: missing keys: "
            f"{', '.join(keys[:4])}, ... (10 in all)"
        ],
        "a wrong shape": [
            f"{NETWORK[package]} does not match the network this importer builds: wrong shapes: "
            f"{keys[1]} (3,) (expected {tuple(state[keys[1]].shape)})"
        ],
    }[case]


CASES = [
    "missing",
    "text",
    "empty",
    "truncated",
    "pickled code",
    "safetensors",
    "a GANgealing release",
    "a CoordGAN train.py file",
    "CoCosNet's generator",
    "a renamed key",
    "ten missing keys",
    "a wrong shape",
]
OWN_FORMAT = {
    "gangealing": "a GANgealing release",
    "coordgan": "a CoordGAN train.py file",
    "cocosnet": "CoCosNet's generator",
}


@pytest.mark.parametrize("package, case", [(p, c) for p in CONVERTERS for c in CASES if OWN_FORMAT[p] != c])
def test_one_table_of_bad_files_said_the_same_way(tmp_path, capsys, package, case):
    path = bad_file(case, package, tmp_path)
    with pytest.raises(ValueError) as info:
        CONVERTERS[package].from_official_checkpoint(path)
    message = str(info.value)
    assert_clean(message, *expected(case, package, path))
    if case in ("a renamed key", "ten missing keys", "a wrong shape") and package == "cocosnet":
        assert message.splitlines()[1].startswith("Check --config / config= (celebahq;")
    else:
        assert message.splitlines()[1].startswith(WHAT_TO_PASS[package]), message
    # the command says the same, after "error: ", and writes nothing
    out = tmp_path / "out"
    assert run(CONVERTERS[package].main, [str(path), "--output", str(out)], capsys) == f"error: {message}\n"
    assert not out.exists()


def test_truncated_at_any_length_is_a_value_error(tmp_path):
    """A checkpoint cut anywhere (or with a damaged byte) never escapes as another exception."""
    from cocosnet.convert_official import load_official_state_dict
    from coordgan.convert_official import read_checkpoint as read_coordgan
    from gangealing.convert_official import read_checkpoint

    whole = tmp_path / "whole.pt"
    torch.save({"g_ema": {"style.1.weight": torch.randn(16, 16)}, "t_ema": {}, "ll": {}}, whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pt"
    for n in (1, 8, 30, 100, len(data) // 3, len(data) - 200, len(data) - 1):
        cut.write_bytes(data[:n])
        for reader in (read_checkpoint, load_official_state_dict, read_coordgan):
            with pytest.raises(ValueError):
                reader(cut)
    for legacy in (False, True):
        torch.save({"a": torch.randn(8)}, whole, _use_new_zipfile_serialization=not legacy)
        data = whole.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load_official_state_dict(cut)


# ------------------------------------------------------------------ per importer: what only one of them reads
def test_gangealing_names_a_folder_and_a_generator_only_checkpoint(tmp_path, capsys):
    err = run(gangealing_converter.main, [str(tmp_path), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "is a folder, not a checkpoint file")
    stylegan2 = {
        "g": {},
        "d": {},
        "g_ema": {"style.1.weight": torch.zeros(2)},
        "g_optim": {},
        "d_optim": {},
        "args": argparse.Namespace(),
    }
    err = run(
        gangealing_converter.main,
        [str(save(tmp_path / "stylegan2.pt", stylegan2)), "--output", str(tmp_path / "out")],
        capsys,
    )
    assert_clean(
        err,
        "looks like a StyleGAN2 training checkpoint (g, d, g_ema, ...), not one of the authors' GANgealing releases",
    )
    err = run(
        gangealing_converter.main,
        [str(save(tmp_path / "other.pt", {"g_ema": {}, "weights": {}})), "--output", str(tmp_path / "o")],
        capsys,
    )
    assert_clean(
        err,
        "is not one of the authors' GANgealing releases: unknown top-level keys: weights; missing top-level keys: "
        "t_ema, ll",
    )


def test_gangealing_names_every_missing_key_when_the_layout_cannot_be_read(tmp_path, capsys):
    """A t_ema without the keys the layout is read from: the authors' default layout stands in, and
    every missing key is named (not only the first the layout reader needed)."""
    ckpt = authors_checkpoint("gangealing")
    ckpt["t_ema"] = {"stns.0.final_linear.weight": torch.zeros(3)}
    err = run(
        gangealing_converter.main, [str(save(tmp_path / "celeba.pt", ckpt)), "--output", str(tmp_path / "out")], capsys
    )
    # the authors' STN has 88 entries, 5 of them constants their loader skips: 83 - 1 present = 82 missing
    assert_clean(
        err,
        "'t_ema' does not match the network this importer builds: missing keys: stns.0.convs.0.0.weight, ",
        "(82 in all); wrong shapes: stns.0.final_linear.weight (3,) (expected (512, 8192))",
    )


def test_gangealing_cli_names_our_own_micro_networks_as_wrong_shapes(tmp_path, capsys):
    """This project's micro networks keep the official key names, not the official widths."""
    from gangealing import tiny_random_pipeline

    pipe = tiny_random_pipeline()
    torch.save(
        {"g_ema": pipe.generator.state_dict(), "t_ema": pipe.transformer.state_dict(), "ll": pipe.target.state_dict()},
        tmp_path / "micro.pt",
    )
    err = run(gangealing_converter.main, [str(tmp_path / "micro.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(
        err,
        "'g_ema' does not match",
        "wrong shapes: input.input (1, 32, 4, 4) (expected (1, 512, 4, 4))",
        "(41 in all)",
    )
    torch.save({"g_ema": {"w": [1, 2]}, "t_ema": {}, "ll": {}}, tmp_path / "lists.pt")
    err = run(gangealing_converter.main, [str(tmp_path / "lists.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'g_ema' must be a state_dict of tensors with data; 1 entries are not: w")


@needs_fixtures
def test_cocosnet_cli_names_pair_problems(tmp_path, capsys):
    folder = cocosnet_pair(tmp_path / "deepfashion", "deepfashion")
    out = ["--output", str(tmp_path / "out")]
    # the release is recognised from the files; forcing another config names the shapes that differ
    err = run(cocosnet_converter.main, [str(folder), "--config", "celebahq", *out], capsys)
    assert_clean(
        err,
        "'correspondence (latest_net_Corr.pth)' does not match the network this importer builds: wrong shapes: "
        "adaptive_model_seg.layer1.0.weight_orig (64, 20, 3, 3) (expected (64, 19, 3, 3))",
        "Check --config",
    )
    # swapped files
    err = run(
        cocosnet_converter.main,
        [
            "--generator",
            str(folder / "latest_net_Corr.pth"),
            "--correspondence",
            str(folder / "latest_net_G.pth"),
            *out,
        ],
        capsys,
    )
    assert_clean(err, "the two files are swapped")
    # half a pair
    (folder / "latest_net_Corr.pth").rename(tmp_path / "elsewhere.pth")
    err = run(cocosnet_converter.main, [str(folder / "latest_net_G.pth"), *out], capsys)
    assert_clean(err, "latest_net_Corr.pth' (beside latest_net_G.pth) does not exist", "--correspondence")
    # a generator file not named like the authors' one
    (folder / "latest_net_G.pth").rename(tmp_path / "generator.pth")
    err = run(cocosnet_converter.main, [str(tmp_path / "generator.pth"), *out], capsys)
    assert_clean(err, "is not named like the authors' latest_net_G.pth", "--correspondence")
    err = run(cocosnet_converter.main, [str(folder), *out], capsys)
    assert_clean(err, "holds no latest_net_G.pth")


@needs_fixtures
def test_cocosnet_names_a_correspondence_file_of_another_kind(tmp_path, capsys):
    folder = cocosnet_pair(tmp_path / "celebahq")
    out = ["--output", str(tmp_path / "out")]
    torch.save({"fc.weight": torch.zeros(1)}, folder / "latest_net_G.pth")
    torch.save({"theta.weight": torch.zeros(1)}, folder / "latest_net_Corr.pth")
    err = run(cocosnet_converter.main, [str(folder), *out], capsys)
    assert_clean(
        err,
        "is not CoCosNet's correspondence network (latest_net_Corr.pth): missing keys: "
        "adaptive_model_seg.layer1.0.weight_orig",
        "its keys: theta.weight",
    )
    torch.save(real_state(FIXTURES / "cocosnet-official" / "keys_celebahq_D.json"), folder / "latest_net_Corr.pth")
    err = run(cocosnet_converter.main, [str(folder), *out], capsys)
    assert_clean(
        err,
        "looks like CoCosNet's discriminator (a latest_net_D.pth state_dict), not CoCosNet's correspondence network",
    )
    from cocosnet import tiny_random_pipeline

    tiny_random_pipeline().save_pretrained(tmp_path / "converted")
    err = run(cocosnet_converter.main, [str(tmp_path / "converted"), *out], capsys)
    assert_clean(err, "is already a converted (save_pretrained) folder")


@needs_fixtures
def test_a_recognised_pair_converts_and_loads_from_the_app_flag(tmp_path, capsys):
    """The success path with real key lists and shapes (values all zero): the CLI writes a folder, and
    --cocosnet takes the authors' folder, its latest_net_G.pth or the converted folder."""
    folder = cocosnet_pair(tmp_path / "celebahqedge", "celebahqedge")
    assert cocosnet_converter.main([str(folder), "--output", str(tmp_path / "out")]) == 0
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
    done = subprocess.run(
        [sys.executable, "-m", module, str(text), "--output", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert_clean(done.stderr, "is not a PyTorch checkpoint")
    assert done.stdout == ""


@pytest.mark.parametrize("case", ["text", "empty", "truncated", "pickled code", "a CoordGAN train.py file"])
def test_app_flags_show_the_problem_in_two_lines(tmp_path, case):
    for name in ("gangealing", "cocosnet"):
        path = bad_file(case, name, tmp_path)
        message = models.load(models.SPECS[name], str(path), env={}).message
        assert_clean(
            message,
            f"Could not load the {name} checkpoint `{path}`",
            *expected(case, name, path),
            f"Pass --{name} a save_pretrained folder",
        )
    path = bad_file("text", "coordgan", tmp_path)
    message = models.load(models.SPECS["coordgan"], str(path), env={}).message
    assert_clean(message, "is a file, but coordgan loads a save_pretrained folder or a Hub repo id")
    message = models.load(models.SPECS["coordgan"], str(tmp_path / "empty-folder"), env={}).message
    assert "No coordgan checkpoint at" in message
