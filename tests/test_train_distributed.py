"""Every training entry point under `accelerate launch --multi_gpu --num_processes 2` on the CPU
(gloo): two steps, then both processes must hold identical weights (the gradients were averaged)
after having seen different data (their local losses differ). tests/helpers/train_probe.py records
both; the launches run two at a time."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
       "ACCELERATE_USE_CPU": "true"}
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]
COMMON = ["--data", "synthetic:faces", "--batch-size", "2", "--steps", "2", "--save-every", "2", "--sample-every", "2",
          "--log-every", "1"]


def prerequisites(root: Path) -> dict:
    """Random networks that the later stages start from, saved where their flags look."""
    from coordgan.model import CONFIGS, CoordGANGenerator
    from gangealing import GENERATOR_CONFIGS, GANgealingPipeline, LearnedTarget, SpatialTransformer, StyleGAN2Generator
    from gangealing.transformer import TRANSFORMER_CONFIGS

    torch.manual_seed(0)
    CoordGANGenerator(**CONFIGS["tiny"]).save_pretrained(root / "coordgan-encoder" / "generator")
    generator = StyleGAN2Generator(**GENERATOR_CONFIGS["micro"])
    generator.save_pretrained(root / "stylegan2-micro")
    transformer = SpatialTransformer(**{**TRANSFORMER_CONFIGS["micro"], "num_heads": 2})
    target = LearnedTarget(num_directions=1, num_heads=2, num_latents=generator.num_latents, inject_index=3,
                           style_dim=generator.style_dim)
    target.fit_pca(generator.mapping(torch.randn(256, generator.style_dim)).detach())
    GANgealingPipeline(generator, transformer, target, None).save_pretrained(root / "classifier" / "pipeline")
    return {
        "stylegan2": ["train/stylegan2.py", "--config", "micro", "--pose", "wide"],
        "coordgan": ["train/coordgan.py", "--config", "tiny", "--texture-swap-distance", "edges"],
        "coordgan-encoder": ["train/coordgan.py", "--config", "tiny", "--stage", "encoder",
                             "--texture-swap-distance", "edges"],
        "gangealing": ["train/gangealing.py", "--config", "micro", "--pose", "wide", "--generator",
                       str(root / "stylegan2-micro"),
                       "--pca-samples", "256", "--perceptual", "squeeze"],
        "classifier": ["train/gangealing.py", "--config", "micro", "--stage", "classifier", "--heldout-samples", "8",
                       "--perceptual", "squeeze"],
        "cocosnet": ["train/cocosnet.py", "--config", "micro"],
        "coat": ["train/coat.py", "--config", "tiny"],
    }


def launch(name: str, args: list, root: Path) -> tuple[str, list, str]:
    report = root / f"{name}-report"
    cmd = [*LAUNCH, str(ROOT / "tests" / "helpers" / "train_probe.py"), str(report), *args, *COMMON, "--output",
           str(root / name)]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1) if (report / f"rank{r}.json").is_file()]
    return name, ranks, "" if result.returncode == 0 else result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    entry_points = prerequisites(root)
    with ThreadPoolExecutor(2) as pool:
        return {name: (ranks, error) for name, ranks,
                error in pool.map(lambda item: launch(*item, root), entry_points.items())}


@pytest.mark.parametrize("name",
                         ["stylegan2", "coordgan", "coordgan-encoder", "gangealing", "classifier", "cocosnet", "coat"])
def test_two_processes_average_gradients_over_different_data(reports, name):
    ranks, error = reports[name]
    assert not error, error
    assert len(ranks) == 2 and all(r["processes"] == 2 and r["step"] == 2 for r in ranks)
    assert ranks[0]["weights"] == ranks[1]["weights"], "the processes' weights diverged"
    assert ranks[0]["losses"] != ranks[1]["losses"], "both processes computed the same losses: they saw the same data"
    assert len(ranks[0]["losses"]) >= 2  # at least one update per step
