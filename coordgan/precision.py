"""The mixed-precision policy of CoordGAN (issue #26): under a reduced-precision autocast, the
modules of FP32_MODULES and the functions of FP32_FUNCTIONS run in fp32 (autocast off, fp32 inputs),
the rest (the modulated convolutions themselves: nearly all the work) in the autocast dtype. Opt-in:
nothing changes until `keep_fp32` / `apply_fp32_policy` is called, and outside autocast the wrapped
forwards and functions are the original ones (fp32 outputs are bitwise unchanged).

Chosen from bench/precision_error.py ("Where the bf16 error comes from" in bench/README.md):
- the mapping networks (alone in bf16: 34.6 dB at 128 px, random weights);
- every modulated conv's style s (its `modulation` EqualLinear) and demodulation factors d
  (`layers.demodulation`): per-channel scales of every layer, so a bf16 rounding of them scales whole
  channels, an error that does not average out over a conv's sums; both are matrix-vector work, cheap
  in fp32. With fp32 factors, `ModulatedConv2d` multiplies its bf16 conv output by d out of place
  (fp32 result) rather than rounding it to bf16 a second time;
- the Fourier features of the warped coordinate map (a 1x1 conv and sin; alone in bf16: 46.9 dB
  with random weights).
The coordinate warping network (eq. 3) stays in bf16: in fp32 it adds about 1 dB on the recorded
inputs, and its per-pixel linears are a large share of encoding a photo (label propagation). The
convolutions run on bf16 inputs and weights. bench/README.md ("Reduced precision") has the errors
of this path on the authors' recorded inputs and with random weights.
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch import nn

from .model import FourierEncoding

# the mapping networks and every modulated conv's style (by attribute name), the Fourier features
FP32_MODULES = ("structure_mapping", "texture_mapping", "modulation", FourierEncoding)
FP32_FUNCTIONS = ("demodulation",)  # module-level functions of the package, by name: layers.demodulation


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
