"""The per-package mixed-precision policies (issue #26, <package>/precision.py): under bf16 autocast
the modules of FP32_MODULES compute in fp32, the fp32 path is bitwise unchanged, and the helper code
copied between the packages agrees."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("coordgan", "gangealing", "cocosnet")


def _coordgan():
    from coordgan import tiny_random_pipeline

    g = tiny_random_pipeline().generator.eval()
    z = torch.randn(1, g.config.z_dim, generator=torch.Generator().manual_seed(0))
    return [g], lambda: g(z_s=z, z_t=z, randomize_noise=False).image


def _gangealing():
    from gangealing import tiny_random_pipeline

    t = tiny_random_pipeline().transformer.eval()
    with torch.no_grad():  # a non-identity similarity warp, so the matrix and the warp carry values
        t.stns[0].warp_head.linear.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    size = t.config.input_size
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return [t], lambda: t(x).congealed


def _cocosnet():
    from cocosnet import tiny_random_pipeline

    pipe = tiny_random_pipeline()
    mask = np.zeros((32, 32), np.int64)
    mask[8:24, 6:20] = 3
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    x, _ = pipe.encode_input_map(mask)
    y = pipe.preprocess([photo])[0]
    return [pipe.correspondence_network, pipe.generator], lambda: pipe.run(x, y, None)[0]


BUILD = {"coordgan": _coordgan, "gangealing": _gangealing, "cocosnet": _cocosnet}


@pytest.fixture(autouse=True)
def _no_policy_in_force():
    """An app started earlier in this process at --precision auto (mixed on a bf16 CPU) leaves the
    packages' FP32_FUNCTIONS rebound: each test here starts from the plain functions."""
    for package in PACKAGES:
        importlib.import_module(f"{package}.precision").remove_fp32_policy()


def _dtypes(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out.dtype] if out.is_floating_point() else []
    if isinstance(out, (tuple, list)):
        return [d for o in out for d in _dtypes(o)]
    return _dtypes([v for v in vars(out).values()]) if hasattr(out, "__dataclass_fields__") else []


def _hooked(models, listed, seen):
    """Forward hooks recording the output dtypes of the modules `listed` names (classes or attribute names)."""
    classes = tuple(c for c in listed if not isinstance(c, str))
    return [m.register_forward_hook(lambda mod, args, out: seen.extend(_dtypes(out)))
            for model in models for path, m in model.named_modules()
            if isinstance(m, classes) or path.rsplit(".", 1)[-1] in listed]


@pytest.mark.parametrize("package", PACKAGES)
def test_fp32_path_is_bitwise_unchanged(package):
    policy = importlib.import_module(f"{package}.precision")
    models, run = BUILD[package]()
    with torch.no_grad():
        reference = run()
        wrapped = policy.apply_fp32_policy(*models)
        out = run()
    assert (wrapped or policy.FP32_FUNCTIONS) and torch.equal(out, reference)
    policy.remove_fp32_policy(*models)
    assert not any("forward" in m.__dict__ for model in models for m in model.modules())


@pytest.mark.parametrize("package", [p for p in PACKAGES if importlib.import_module(f"{p}.precision").FP32_MODULES])
def test_listed_modules_compute_in_fp32_under_autocast(package):
    policy = importlib.import_module(f"{package}.precision")
    models, run = BUILD[package]()
    plain, kept = [], []
    handles = _hooked(models, policy.FP32_MODULES, plain)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        run()
    for h in handles:
        h.remove()
    assert torch.bfloat16 in plain  # without the policy, autocast reaches these modules
    handles = _hooked(models, policy.FP32_MODULES, kept)
    with torch.no_grad(), policy.keep_fp32(*models), torch.autocast("cpu", dtype=torch.bfloat16):
        out = run()
    for h in handles:
        h.remove()
    assert kept and set(kept) == {torch.float32}
    assert torch.isfinite(out.float()).all()
    assert not any("forward" in m.__dict__ for model in models for m in model.modules())  # keep_fp32 undoes itself


@pytest.mark.parametrize("package", [p for p in PACKAGES if importlib.import_module(f"{p}.precision").FP32_FUNCTIONS])
def test_listed_functions_compute_in_fp32_under_autocast(package):
    policy = importlib.import_module(f"{package}.precision")
    models, run = BUILD[package]()
    homes = [(importlib.import_module(key), name) for key in list(__import__("sys").modules)
             if key == package or key.startswith(package + ".") for name in policy.FP32_FUNCTIONS
             if callable(getattr(importlib.import_module(key), name, None))]
    seen = {}

    def spy(mod, name, fn):
        def recorded(*args, **kwargs):
            out = fn(*args, **kwargs)
            seen.setdefault(name, set()).update(_dtypes(out))
            return out
        return recorded

    originals = [(mod, name, getattr(mod, name)) for mod, name in homes]
    for mod, name, fn in originals:  # the spy sits inside the policy's wrapper, so it sees the fp32 computation
        setattr(mod, name, spy(mod, name, fn))
    try:
        with torch.no_grad(), policy.keep_fp32(*models), torch.autocast("cpu", dtype=torch.bfloat16):
            run()
        kept = dict(seen)
        seen.clear()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            run()
    finally:
        for mod, name, fn in originals:
            setattr(mod, name, fn)
    assert kept and all(d == {torch.float32} for d in kept.values())
    assert any(torch.bfloat16 in d for d in seen.values())  # without the policy, some run in bf16


def test_copied_helpers_agree():
    texts = [(ROOT / p / "precision.py").read_text() for p in PACKAGES]
    marker = "# Copied from coordgan.precision"
    assert all(marker in t for t in texts)
    assert len({t[t.index(marker):] for t in texts}) == 1


def test_cocosnet_exemplar_cache_never_crosses_precisions():
    """The exemplar's features are cached per exemplar; the stamp holds the autocast dtype and what the
    policy keeps in fp32, so bf16, mixed and fp32 each compute their own and reuse only their own."""
    policy = importlib.import_module("cocosnet.precision")
    (corr, gen), run = _cocosnet()
    computed = []
    corr.adaptive_model_img.register_forward_hook(lambda m, args, out: computed.append(out.dtype))
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    with torch.no_grad():
        with bf16():
            plain = run()
            assert torch.equal(run(), plain) and len(computed) == 1  # the same exemplar: cached
        with policy.keep_fp32(corr, gen), bf16():
            mixed = run()
            assert len(computed) == 2 and torch.equal(run(), mixed) and len(computed) == 2
        (fresh_corr, fresh_gen), fresh_run = _cocosnet()
        with policy.keep_fp32(fresh_corr, fresh_gen), bf16():
            assert torch.equal(fresh_run(), mixed)  # what mixed computes without any cache
        assert not torch.equal(mixed, plain)
        with bf16():
            assert torch.equal(run(), plain) and len(computed) == 3  # policy off again: recomputed
        fp32 = run()
        assert len(computed) == 4 and torch.equal(fresh_run(), fp32)


@pytest.mark.parametrize("package", [p for p in PACKAGES if importlib.import_module(f"{p}.precision").FP32_FUNCTIONS])
def test_remove_undoes_a_wrapper_put_back_behind_its_record(package):
    """An app at auto wraps the functions; a test's monkeypatch saved the wrapper and puts it back after
    the policy was removed (the full run's order): remove_fp32_policy still finds and unwraps it."""
    policy = importlib.import_module(f"{package}.precision")
    homes = [(mod, name) for key, mod in list(__import__("sys").modules.items())
             if key == package or key.startswith(package + ".") for name in policy.FP32_FUNCTIONS
             if callable(getattr(mod, name, None))]
    originals = [getattr(mod, name) for mod, name in homes]
    policy.apply_fp32_policy()
    wrappers = [getattr(mod, name) for mod, name in homes]
    assert all(getattr(w, "fp32_policy", False) for w in wrappers)
    policy.remove_fp32_policy()
    for (mod, name), w in zip(homes, wrappers):
        setattr(mod, name, w)
    policy.remove_fp32_policy()
    assert [getattr(mod, name) for mod, name in homes] == originals
