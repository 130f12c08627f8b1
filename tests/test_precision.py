"""--precision (issue 19): how `auto` resolves, and that a reduced precision wraps the pipeline's
entry points in autocast (weights stay fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from demos import models


def test_auto_is_fp32_on_a_cpu_without_bf16_hardware(monkeypatch):
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx512f", "avx512bw"})
    cpu = torch.device("cpu")
    assert models.native_reduced_dtypes(cpu) == ()
    assert {models.resolve_precision("auto", name, cpu) for name in models.SPECS} == {"fp32"}
    assert models.resolve_precision("bf16", "cocosnet", cpu) == "bf16"  # an explicit choice is kept
    with pytest.raises(ValueError, match="precision must be one of"):
        models.resolve_precision("int8", "cocosnet", cpu)


def test_auto_uses_bf16_only_for_pipelines_within_the_bound(monkeypatch):
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(models, "AUTO_REDUCED", {"bf16": ("coordgan",), "fp16": ()})
    cpu = torch.device("cpu")
    assert models.native_reduced_dtypes(cpu) == ("bf16",)
    assert models.resolve_precision("auto", "coordgan", cpu) == "bf16"
    assert models.resolve_precision("auto", "cocosnet", cpu) == "fp32"


def test_bf16_runs_the_entry_points_under_autocast():
    from cocosnet import tiny_random_pipeline

    mask = np.zeros((32, 32), np.int64)
    mask[8:24, 6:20] = 3
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    reference = np.asarray(tiny_random_pipeline().translate(mask, photo).image, np.float32)
    pipe = models.set_precision(tiny_random_pipeline(), "bf16", torch.device("cpu"))
    seen = []
    pipe.generator.register_forward_hook(lambda m, args,
                                         out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    out = np.asarray(pipe.translate(mask, photo).image, np.float32)
    assert pipe.precision == "bf16" and seen == [(True, torch.bfloat16)]
    assert next(pipe.generator.parameters()).dtype == torch.float32
    assert np.abs(out - reference).mean() < 8  # bf16: close, not equal (uint8 levels)
    assert models.set_precision(tiny_random_pipeline(), "fp32", torch.device("cpu")).precision == "fp32"
