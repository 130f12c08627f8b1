"""train/cocosnet.py for a few steps on a micro config: accelerate launch, resume, export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from train.cocosnet import distort, main, parse_args

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
              "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
COMMON = ["--config", "micro", "--data", "synthetic:faces", "--batch-size", "2", "--save-every", "2", "--sample-every",
          "2", "--log-every", "1"]


def run(args, launcher):
    result = subprocess.run(launcher + [str(ROOT / "train" / "cocosnet.py"), *args], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_trains_saves_resumes_and_exports(tmp_path, capsys, monkeypatch):
    run([*COMMON, "--output", str(tmp_path), "--steps", "2"], ACCELERATE)
    assert (tmp_path / "state").is_dir() and (tmp_path / "pipeline" / "model_index.json").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000002.png"]
    logs = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2]
    assert all({"perc", "context", "gan", "d_feat", "domain", "reg"} <= set(r) for r in logs)
    # resume in this process (plain python, no launcher): continues at step 3
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main(parse_args([*COMMON, "--output", str(tmp_path), "--steps", "3", "--resume"]))
    assert "resumed" in capsys.readouterr().out
    logs = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3]
    from cocosnet import CoCosNetPipeline

    pipe = CoCosNetPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.input_kind == "mask" and pipe.num_classes == 12 and pipe.class_names[1] == "skin"
    assert not (tmp_path / "pipeline.tmp").exists() and not (tmp_path / "state.tmp").exists()


def test_pseudo_exemplar_distortion():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    out = distort(images, g)
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.allclose(out, images)
    constant = torch.full((2, 3, 16, 16), 0.25)
    assert torch.allclose(distort(constant, g), constant, atol=1e-6)  # a geometric change only
