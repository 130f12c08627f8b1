"""`python -m coordgan.convert_official` and `convert_official.from_official_checkpoint` on files that
are not what they should be: a ValueError of one or two lines (the problem, then what to pass),
the command prints it after "error: " and exits 2, no traceback. Real key lists come from the
fixtures' key files; every tensor is one stored zero expanded to the real shape, so the files are
a few kB."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coordgan import CoordGANPipeline
from coordgan.convert_official import main as convert_main
from coordgan.convert_official import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "coordgan-official"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason=f"CoordGAN official key lists not found at {FIXTURES} "
                                           "(they live outside the repository)")
WHAT_TO_PASS = "Pass a checkpoint written by the authors' CoordGAN train.py"


def real_state(name: str) -> dict:
    """A state_dict with the fixture's keys and shapes, every tensor a zero expanded to its shape."""
    return {e["key"]: torch.zeros(1).expand(e["shape"]) for e in json.loads((FIXTURES / name).read_text())["entries"]}


def assert_clean(text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert 1 <= len(lines) <= 2, text
    assert "Traceback" not in text and "weights_only" not in text and "WeightsUnpickler" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def run(argv, capsys) -> str:
    code = convert_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ")
    return err


def test_a_dict_with_lists_is_named(tmp_path, capsys):
    """(Files every converter refuses, and other models' files, are in tests/test_convert_errors.py.)"""
    torch.save({"g_ema": {"style.1.weight": [1, 2]}}, tmp_path / "lists.pt")
    assert_clean(run([str(tmp_path / "lists.pt"), "--output", str(tmp_path / "out")], capsys),
                 "'g_ema' must be a state_dict of tensors with data; 1 entries are not: style.1.weight")
    torch.save({"model": {}, "optimizer": {}}, tmp_path / "other.pt")
    assert_clean(run([str(tmp_path / "other.pt"), "--output", str(tmp_path / "out")], capsys),
                 "is not one of the authors' CoordGAN checkpoints: unknown top-level keys: model, optimizer; missing "
                 "top-level keys: g_ema")


@needs_fixtures
def test_bogus_keys_and_shapes_are_named_with_counts(tmp_path, capsys):
    g_ema = real_state("keys_generator_128.json")
    bogus = dict(g_ema)
    bogus["convs.3.noise.strength"] = bogus.pop("convs.3.noise.weight")
    for i in range(1, 7):
        bogus[f"extra.{i}"] = torch.zeros(1)
    bogus["lff.ffm.conv.weight"] = torch.zeros(256, 2, 1, 1)
    torch.save({"g": bogus, "g_ema": bogus}, tmp_path / "celebA_128.pt")
    err = run([str(tmp_path / "celebA_128.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'g_ema' does not match the network this importer builds: unknown keys: convs.3.noise.strength, "
                      "extra.1, extra.2, "
                      "extra.3, ... (7 in all); missing keys: convs.3.noise.weight; wrong shapes: lff.ffm.conv.weight "
                      "(256, 2, 1, 1) "
                      "(expected (512, 2, 1, 1))", WHAT_TO_PASS)
    # a 128 px file forced to the 512 px config: the missing upsampling stages are named and counted
    torch.save({"g_ema": g_ema}, tmp_path / "celebA_128.pt")
    err = run([str(tmp_path / "celebA_128.pt"), "--config", "celebA_512", "--output", str(tmp_path / "out")], capsys)
    assert_clean(err,
                 "missing keys: convs.10.conv.weight, convs.10.conv.modulation.weight, convs.10.conv.modulation.bias, "
                      "convs.10.noise.weight, ... (32 in all)")
    # an encoder whose blur kernels are not the authors' constants
    e = real_state("keys_encoder.json")
    torch.save({"g_ema": g_ema, "e": e}, tmp_path / "celebA_enc.pt")
    err = run([str(tmp_path / "celebA_enc.pt"), "--output", str(tmp_path / "out")], capsys)
    assert_clean(err, "'e' does not match the network this importer builds: constant blur kernels that differ from "
                      "the authors' [1, 2, 1] / [1] "
                      "filters: DownToSpatialCode.ResBlockDownBy1.conv2.Blur.kernel")
    torch.save({"g_ema": g_ema}, tmp_path / "not_enc.pt")
    err = run([str(tmp_path / "celebA_128.pt"), "--encoder", str(tmp_path / "not_enc.pt"), "--output",
               str(tmp_path / "out")], capsys)
    assert_clean(err, "not_enc.pt' is not one of the authors' CoordGAN checkpoints: missing top-level keys: e "
                      "(train-encoder.py writes the encoder 'e')")
    assert not (tmp_path / "out").exists()


@needs_fixtures
def test_generator_only_checkpoint_generates_and_says_what_real_images_need(tmp_path, capsys):
    torch.save({"g": {}, "d": {}, "g_ema": real_state("keys_generator_128.json"), "g_optim": {}, "d_optim": {},
                "d_patch": {}}, tmp_path / "300000.pt")
    assert convert_main([str(tmp_path / "300000.pt"), "--output", str(tmp_path / "out")]) == 0
    assert "128 px generator, no encoder (label propagation on real images needs --encoder)" in capsys.readouterr().out
    pipe = CoordGANPipeline.from_pretrained(tmp_path / "out")
    assert pipe.encoder is None and pipe.generator.config.coordinate_grid == "linspace"
    with torch.no_grad():  # generating works (a corner crop keeps this fast: 9 s for a whole 128 px image)
        cmap = pipe.generator.correspondence_map(torch.zeros(1, 512))
        assert pipe.generator.synthesize(cmap[..., :8, :8], torch.zeros(1, 512)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError,
                       match=r"this pipeline has no encoder, so it cannot read real images .*--encoder ENC.pt"):
        pipe.propagate_labels(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy(),
                              torch.ones(8, 8, dtype=torch.int64).numpy(), [])
    assert read_checkpoint(tmp_path / "300000.pt")["g_ema"]["foldnet.conv1_1.weight"].shape == (512, 514, 1)


def test_command_exits_2_without_traceback(tmp_path):
    text = tmp_path / "celebA_128.pt"
    text.write_text("not a checkpoint")
    done = subprocess.run([sys.executable, "-m", "coordgan.convert_official", str(text), "--output",
                           str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert_clean(done.stderr, "error: ", "is not a PyTorch checkpoint", WHAT_TO_PASS)
    assert done.stdout == ""


def test_evaluate_and_pipeline_name_and_apply_both_rules():
    """--rule ours|authors: the CoordGAN row says which rule it used; the pipeline takes the same option."""
    from coordgan import tiny_random_pipeline
    from coordgan.evaluate import label_propagation, load_data

    pipe = tiny_random_pipeline()
    images, labels, coords, names = load_data("synthetic:faces", 4, pipe.generator.resolution, seed=3)
    rows = {rule: label_propagation(pipe, images, labels, None, len(names), references=1,
                                    rule=rule) for rule in ("ours", "authors")}
    assert "coordgan (our rule: eq. (1), nearest coordinate at the image size)" in rows["ours"]
    assert "coordgan (the authors' rule: softmax(-L2 distance / 0.01) at the map size)" in rows["authors"]
    out = pipe.propagate_labels(images[0], labels[0], [images[1], images[2][:10]], rule="authors")
    assert [o.shape for o in out] == [labels[1].shape, (10, 16)] and out[0].dtype == np.int64
    with pytest.raises(ValueError, match="rule must be one of"):
        pipe.propagate_labels(images[0], labels[0], [images[1]], rule="nearest")
