"""--precision (issues 19 and 26): how `auto` resolves, that a reduced precision wraps the pipeline's
entry points in autocast (weights stay fp32), and that `mixed` applies the package's fp32 policy
(<package>/precision.py) on top of bf16 autocast while fp32 stays bitwise unchanged."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from demos import models

CPU = torch.device("cpu")
PACKAGES = ("coordgan", "gangealing", "cocosnet")


def test_auto_is_fp32_on_a_cpu_without_bf16_hardware(monkeypatch):
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx512f", "avx512bw"})
    assert models.native_reduced_dtypes(CPU) == ()
    assert {models.resolve_precision("auto", name, CPU) for name in models.SPECS} == {"fp32"}
    assert models.resolve_precision("bf16", "cocosnet", CPU) == "bf16"  # an explicit choice is kept
    assert models.resolve_precision("mixed", "cocosnet", CPU) == "mixed"
    assert models.resolve_precision("mixed", "coat", CPU) == "bf16"  # no policy: mixed is plain bf16
    with pytest.raises(ValueError, match="precision must be one of"):
        models.resolve_precision("int8", "cocosnet", CPU)


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_picks_mixed_where_bf16_is_native_and_the_package_is_within_the_bound(monkeypatch, flag):
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx512f", flag})
    assert models.native_reduced_dtypes(CPU) == ("bf16",)
    assert set(models.AUTO_MIXED) == set(PACKAGES)  # measured within the bound (bench/fullsize.py --fixtures)
    assert {name: models.resolve_precision("auto", name, CPU) for name in PACKAGES} == dict.fromkeys(PACKAGES, "mixed")
    assert models.resolve_precision("auto", "coat", CPU) == "fp32"  # no measured mixed path
    monkeypatch.setattr(models, "AUTO_MIXED", ("coordgan",))  # the list decides
    assert models.resolve_precision("auto", "cocosnet", CPU) == "fp32"
    assert models.AUTO_BOUND == {"psnr_db": 40.0, "mean_abs": 2 / 255}


def _cocosnet():
    from cocosnet import tiny_random_pipeline

    mask = np.zeros((32, 32), np.int64)
    mask[8:24, 6:20] = 3
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return tiny_random_pipeline, lambda pipe: np.asarray(pipe.translate(mask, photo).image, np.float32)


def _gangealing():
    from gangealing import tiny_random_pipeline

    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    return tiny_random_pipeline, lambda pipe: np.asarray(pipe.congeal([photo]).images[0], np.float32)


def _coordgan():
    from coordgan import tiny_random_pipeline

    return tiny_random_pipeline, lambda pipe: np.asarray(pipe.generate(0, 1).images[0], np.float32)


ENTRY = {"cocosnet": _cocosnet, "gangealing": _gangealing, "coordgan": _coordgan}


def test_bf16_runs_the_entry_points_under_autocast():
    build, call = _cocosnet()
    reference = call(build())
    pipe = models.set_precision(build(), "bf16", CPU)
    seen = []
    pipe.generator.register_forward_hook(lambda m, args,
                                         out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    out = call(pipe)
    assert pipe.precision == "bf16" and seen == [(True, torch.bfloat16)]
    assert next(pipe.generator.parameters()).dtype == torch.float32
    assert np.abs(out - reference).mean() < 8  # bf16: close, not equal (uint8 levels)
    assert models.set_precision(build(), "fp32", CPU).precision == "fp32"


class _ConvDtypes(torch.overrides.TorchFunctionMode):
    """Records the output dtype of every 2-d (transposed) convolution."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.nn.functional.conv2d, torch.conv2d, torch.nn.functional.conv_transpose2d):
            self.seen.add(out.dtype)
        return out


def _policy_spies(package, policy, modules, monkeypatch, seen):
    """Hooks on the policy's modules and spies on its functions (installed before the policy wraps
    them, so they see what runs inside the wrapper), recording output dtypes in `seen`."""
    classes = tuple(c for c in policy.FP32_MODULES if not isinstance(c, str))

    def record(out):
        seen.update(t.dtype for t in (out if isinstance(out, (tuple, list)) else [out])
                    if isinstance(t, torch.Tensor) and t.is_floating_point())

    for model in modules:
        for path, m in model.named_modules():
            if isinstance(m, classes) or path.rsplit(".", 1)[-1] in policy.FP32_MODULES:
                m.register_forward_hook(lambda mod, args, out: record(out))
    for key, mod in list(sys.modules.items()):
        if key == package or key.startswith(package + "."):
            for name in policy.FP32_FUNCTIONS:
                if callable(fn := getattr(mod, name, None)):
                    monkeypatch.setattr(mod, name, lambda *a, fn=fn, **k: (out := fn(*a, **k), record(out))[0])


@pytest.mark.parametrize("package", PACKAGES)
def test_mixed_keeps_the_policy_in_fp32_and_runs_convolutions_in_bf16(package, monkeypatch):
    build, call = ENTRY[package]()
    policy = importlib.import_module(f"{package}.precision")
    fp32_pipe = build()
    reference = call(fp32_pipe)
    pipe = build()
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    kept = set()
    _policy_spies(package, policy, modules, monkeypatch, kept)
    try:
        models.set_precision(pipe, "mixed", CPU)
        with _ConvDtypes() as convs:
            out = call(pipe)
        assert pipe.precision == "mixed"
        assert kept == {torch.float32}  # the policy's modules and functions computed in fp32
        assert torch.bfloat16 in convs.seen  # and the convolutions in bf16
        assert next(pipe.components[next(iter(pipe.components))].parameters()).dtype == torch.float32
        assert np.isfinite(out).all() and np.abs(out - reference).mean() < 8
        # the policy is in force (its functions are rebound for the process): fp32 is bitwise unchanged
        assert np.array_equal(call(fp32_pipe), reference)
    finally:
        policy.remove_fp32_policy(*modules)
