"""train/stylegan2.py and train/gangealing.py end to end for a few micro steps, run in-process
through their main() (the code path of `python train/x.py`; an `accelerate launch` subprocess
costs ~30 s of imports on this machine, over the test budget): resume, bf16, sample grids, logs
and the exported pipeline."""

import json
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train import gangealing as train_gangealing  # noqa: E402
from train import stylegan2 as train_stylegan2  # noqa: E402

COMMON = ["--config", "micro", "--data", "synthetic:faces", "--pose", "wide", "--batch-size", "2", "--save-every", "2",
          "--sample-every", "2", "--log-every", "1"]


def in_process(module, args, capsys):
    """Run a training script's main() here (as `python train/x.py` would), fresh accelerate state."""
    AcceleratorState._reset_state(True)
    torch.set_num_threads(1)
    module.main(module.parse_args(args))
    AcceleratorState._reset_state(True)
    out = capsys.readouterr()
    return out.out + out.err


def steps_logged(folder):
    return [json.loads(line)["step"] for line in (folder / "logs.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stylegan2")
    AcceleratorState._reset_state(True)
    train_stylegan2.main(train_stylegan2.parse_args([*COMMON, "--output", str(folder), "--steps", "2"]))
    return folder


def test_stylegan2_trains_exports_and_resumes(generator_run, capsys):
    assert (generator_run / "state").is_dir() and (generator_run / "generator" / "config.json").is_file()
    assert sorted(p.name for p in (generator_run / "samples").iterdir()) == ["step_0000002.png"]
    log = in_process(train_stylegan2, [*COMMON, "--output", str(generator_run), "--steps", "3", "--resume"], capsys)
    assert "resumed" in log and steps_logged(generator_run) == [1, 2, 3]


def test_gangealing_trains_resumes_and_exports_a_pipeline(generator_run, tmp_path, capsys):
    args = [*COMMON, "--generator", str(generator_run / "generator"), "--output", str(tmp_path), "--pca-samples", "256",
            "--grad-accum", "2"]
    in_process(train_gangealing, [*args, "--steps", "2"], capsys)
    logs = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2] and all({"align", "tv", "identity", "psi"} <= set(r) for r in logs)
    assert logs[0]["psi"] == 1.0 and logs[0]["align"] == 0.0  # psi = 1: the target is G(w) itself, T starts at identity
    log = in_process(train_gangealing, [*args, "--steps", "3", "--resume", "--mixed-precision", "bf16"], capsys)
    assert "resumed" in log and steps_logged(tmp_path) == [1, 2, 3]
    from PIL import Image

    from gangealing import GANgealingPipeline

    grid = Image.open(tmp_path / "samples" / "step_0000003.png")
    assert grid.size == (9 * 32, 3 * 32)  # 8 samples + the average column, rows: G(w), T(G(w)), target
    pipe = GANgealingPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.transformer.config.input_size == 32 and pipe.target.config.inject_index == 3
    assert pipe.congeal([grid.crop((0, 0, 32, 32))]).images[0].size == (32, 32)


def test_bad_data_spec_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_gangealing.parse_args(["--output", str(tmp_path), "--generator", "x", "--data", "imagenet"])
    assert "--data must be" in capsys.readouterr().err


def test_tv_weight_makes_one_smooth_warp_cost_the_same_on_every_flow_grid():
    """lambda_TV is stated for the paper's 128 x 128 flow; the same continuous warp sampled on a
    32 x 32 grid has 4x larger neighbour differences, so its weight is 16x smaller."""
    from gangealing.transformer import total_variation

    def warp(size):  # a smooth rotation-like residual flow, (1, size, size, 2), normalised coordinates
        y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        return 0.05 * torch.stack([torch.sin(2 * y), torch.cos(3 * x)], -1)[None]

    costs = [train_gangealing.scaled_tv_weight(2500.0, s) * total_variation(warp(s)).item() for s in (32, 64, 128)]
    assert train_gangealing.scaled_tv_weight(2500.0, 128) == 2500.0
    assert costs[0] == pytest.approx(costs[2], rel=0.1) and costs[1] == pytest.approx(costs[2], rel=0.05), costs
