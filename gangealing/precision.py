"""The mixed-precision policy of GANgealing (issue #26): under a reduced-precision autocast, the
modules of FP32_MODULES and the functions of FP32_FUNCTIONS run in fp32 (autocast off, fp32 inputs),
the rest (the convolutions of both transformers' trunks and of the flow head) in the autocast dtype.
Opt-in: nothing changes until `keep_fp32` / `apply_fp32_policy` is called, and outside autocast the
wrapped forwards and functions are the original ones (fp32 outputs are bitwise unchanged).

Chosen from bench/precision_error.py ("Where the bf16 error comes from" in bench/README.md) and
the authors' recorded inputs (bench/fullsize.py --fixtures): the similarity head regresses one
matrix per image, and a bf16 rounding of it moves the congealed image by a fraction of a pixel; the
sampling grid (`apply_affine`: in bf16 its coordinates are 1/256 of the range apart, half a pixel at
256 px) and the bilinear warps are the other sensitive parts. The similarity trunk's convolutions
stay in bf16: keeping the whole similarity transformer in fp32 is closer (fixture 52.4 dB, random
weights 46.4 dB) but about as slow as fp32 (it is most of the work at 256 px), while this policy is
as fast as plain bf16. The similarity matrices' composition and their `affine_grid`
(`similarity_grid`) are coordinates too, kept in fp32. Errors: bench/README.md, "Reduced precision".
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch import nn

from .transformer import MipmapWarp, SimilarityHead

# the similarity transformer's last linear (by attribute name) and matrix head, every bilinear warp
FP32_MODULES = ("final_linear", SimilarityHead, MipmapWarp)
# the sampling grids: matrix @ (identity + flow), and the similarity STN's composed matrix and its grid
FP32_FUNCTIONS = ("apply_affine", "similarity_grid")


# Copied from coordgan.precision (the same helpers in cocosnet/ and gangealing/precision.py)
_PACKAGE = __name__.rpartition(".")[0]


def _package_modules() -> list:
    """The package's imported modules: where its FP32_FUNCTIONS are rebound, and where a wrapper is found
    again (no separate record that could go stale: a monkeypatch undo may put a wrapper back)."""
    return [mod for key, mod in list(sys.modules.items()) if key == _PACKAGE or key.startswith(_PACKAGE + ".")]


def _as_fp32(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, (tuple, list)):
        return type(x)(_as_fp32(v) for v in x)
    return x


def _in_fp32(fn):
    """fn with autocast off and fp32 inputs while an autocast is on; fn itself otherwise."""
    def fp32_fn(*args, **kwargs):
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        if not torch.is_autocast_enabled(device_type):
            return fn(*args, **kwargs)  # the fp32 path: untouched
        with torch.autocast(device_type, enabled=False):
            return fn(*_as_fp32(args), **_as_fp32(kwargs))

    fp32_fn.fp32_policy = True
    fp32_fn.__wrapped__ = fn
    return fp32_fn


def apply_fp32_policy(*models: nn.Module, modules: tuple = FP32_MODULES, functions: tuple = FP32_FUNCTIONS) -> list:
    """Make every submodule of `models` that is an instance of a class in `modules`, or whose
    attribute name is a string in `modules`, run in fp32 under autocast (its forward is replaced on
    the instance), and the package's `functions` too (rebound, for the whole process, in every module
    of the package; they pass through unchanged outside autocast). Returns the wrapped modules;
    idempotent."""
    classes = tuple(c for c in modules if not isinstance(c, str))
    wrapped = []
    for model in models:
        for path, m in model.named_modules():
            listed = isinstance(m, classes) or path.rsplit(".", 1)[-1] in modules
            if listed and not getattr(m.__dict__.get("forward"), "fp32_policy", False):
                m.forward = _in_fp32(type(m).forward.__get__(m))
                wrapped.append(m)
    for mod in _package_modules():
        for name in functions:
            fn = getattr(mod, name, None)
            if callable(fn) and not getattr(fn, "fp32_policy", False):
                setattr(mod, name, _in_fp32(fn))
    return wrapped


def remove_fp32_policy(*models: nn.Module) -> None:
    """Undo `apply_fp32_policy` on `models` and on the package's functions."""
    for model in models:
        for m in model.modules():
            if getattr(m.__dict__.get("forward"), "fp32_policy", False):
                del m.__dict__["forward"]
    for mod in _package_modules():
        for name, fn in list(vars(mod).items()):
            while getattr(fn, "fp32_policy", False):
                fn = fn.__wrapped__
                setattr(mod, name, fn)


def fp32_policy_state(*models: nn.Module) -> tuple:
    """What the policy keeps in fp32 right now: the names of the package's rebound functions and the
    paths of the wrapped submodules of `models`. A cache of results computed under autocast stamps
    itself with this, so that turning the policy on or off never reuses the other path's results."""
    functions = tuple(sorted({name for mod in _package_modules() for name, fn in vars(mod).items()
                              if getattr(fn, "fp32_policy", False)}))
    modules = tuple(path for model in models for path, m in model.named_modules()
                    if getattr(m.__dict__.get("forward"), "fp32_policy", False))
    return functions, modules


@contextlib.contextmanager
def keep_fp32(*models: nn.Module, modules: tuple = FP32_MODULES, functions: tuple = FP32_FUNCTIONS):
    """`apply_fp32_policy` for the duration of a `with` block.

    >>> lin = nn.Linear(4, 4)
    >>> with keep_fp32(lin, modules=(nn.Linear,)), torch.autocast("cpu", dtype=torch.bfloat16):
    ...     lin(torch.ones(1, 4)).dtype
    torch.float32
    """
    apply_fp32_policy(*models, modules=modules, functions=functions)
    try:
        yield
    finally:
        remove_fp32_policy(*models)
