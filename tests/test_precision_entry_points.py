"""Every pipeline call the app makes runs under --precision mixed (what `auto` picks on a CPU with bf16
arithmetic or a GPU): no bf16 tensor reaches numpy, and the answers keep their types and shapes."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

import synthetic
from demos import models

SAMPLE = synthetic.sample("faces", 3, 64, seed=0)
A, B, C = (Image.fromarray(x) for x in SAMPLE.image)
LABELS = SAMPLE.labels[0]
POINTS = np.array([[10.0, 20.0], [30.0, 31.0]])
EDIT = np.zeros((32, 32, 4), np.uint8)
EDIT[8:16] = (255, 0, 0, 255)
CALLS = {
    "coordgan": lambda p: [p.generate(0, 1), p.propagate_labels(A, LABELS, [B]), p.match_points(A, B, POINTS),
                           p.dense_flow(A, B)],
    "gangealing": lambda p: [p.congeal([A, B]), p.propagate_edit(EDIT, [A]), p.average_image([A, B]),
                             p.match_points(A, B, POINTS), p.dense_flow(A, B)],
    "cocosnet": lambda p: [p.translate(LABELS, B), p.match_points(LABELS, B, POINTS), p.dense_flow(LABELS, B)],
    "coat": lambda p: [p.match_points(A, B, POINTS), p.dense_flow(A, B)],
}


@pytest.mark.parametrize("package", sorted(CALLS))
def test_the_apps_calls_run_under_mixed_precision(package):
    fp32 = CALLS[package](importlib.import_module(package).tiny_random_pipeline(seed=0))
    pipe = importlib.import_module(package).tiny_random_pipeline(seed=0)
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    try:
        models.set_precision(pipe, "mixed", torch.device("cpu"))
        mixed = CALLS[package](pipe)
    finally:
        try:
            importlib.import_module(f"{package}.precision").remove_fp32_policy(*modules)
        except ModuleNotFoundError:  # a package without a policy runs plain bf16
            pass
    matches = [(a, b) for a, b in zip(fp32, mixed) if hasattr(a, "points")]
    assert len(matches) == 1
    (a, b), = matches
    assert b.points.dtype == a.points.dtype and b.points.shape == a.points.shape
    assert b.confidence.dtype == np.float32 and np.isfinite(b.confidence).all()
    flows = [(a, b) for a, b in zip(fp32, mixed) if isinstance(a, np.ndarray)]
    assert flows and all(b.dtype == a.dtype and b.shape == a.shape for a, b in flows)
