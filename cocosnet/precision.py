"""The mixed-precision policy of CoCosNet (issue #26): under a reduced-precision autocast, the
functions of FP32_FUNCTIONS (and modules of FP32_MODULES) run in fp32 (autocast off, fp32 inputs),
the rest (the convolutions of the adaptors and of the SPADE generator) in the autocast dtype.
Opt-in: nothing changes until `keep_fp32` / `apply_fp32_policy` is called, and outside autocast the
wrapped functions are the original ones (fp32 outputs are bitwise unchanged).

Chosen from bench/precision_error.py ("Where the bf16 error comes from" in bench/README.md): the
positional normalisation (eq. 5) computes its statistics on bf16 activations under plain autocast,
and keeping it in fp32 is the largest single gain (random weights: 33.8 -> 35.4 dB). The centred
cosine vectors of eq. (3) and the alpha = 100 softmax warp of eq. (4) stay in bf16: in fp32 they
changed the error on the authors' recorded inputs by at most 0.1 dB but cost 0.4 s of 1.7 s (the
warp is a 4096 x 4096 product). The convolutions themselves carry the rest of the error.
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch import nn

FP32_MODULES = ()
FP32_FUNCTIONS = ("positional_norm",)  # PONO statistics (eq. 5)


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
