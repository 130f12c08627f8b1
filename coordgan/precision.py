"""The mixed-precision policy of CoordGAN (issue #26): under a reduced-precision autocast, the
modules of FP32_MODULES run in fp32 (autocast off, fp32 inputs), the rest (the modulated 3x3
convolutions: nearly all the work) in the autocast dtype. Opt-in: nothing changes until
`keep_fp32` / `apply_fp32_policy` is called, and outside autocast the wrapped forward is the
original one (fp32 outputs are bitwise unchanged).

Chosen from bench/precision_error.py ("Where the bf16 error comes from" in bench/README.md): the
mapping networks alone in bf16 cost 34.6 dB at 128 px, and the style vectors (the modulation
EqualLinear of every modulated conv) feed the demodulation; both are matrix-vector work, cheap in fp32.
The warped coordinate map (eq. 3) and its Fourier features are the precision-sensitive coordinates.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .layers import EqualLinear
from .model import CoordinateWarpingNetwork, FourierEncoding

# mapping networks + modulation (style) layers, warped coordinates, Fourier features
FP32_MODULES = (EqualLinear, CoordinateWarpingNetwork, FourierEncoding)


# Copied from coordgan.precision (the same helpers in cocosnet/ and gangealing/precision.py)
def _as_fp32(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, (tuple, list)):
        return type(x)(_as_fp32(v) for v in x)
    return x


def _fp32_forward(module: nn.Module):
    forward = type(module).forward.__get__(module)

    def fp32_forward(*args, **kwargs):
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        if not torch.is_autocast_enabled(device_type):
            return forward(*args, **kwargs)  # the fp32 path: untouched
        with torch.autocast(device_type, enabled=False):
            return forward(*_as_fp32(args), **_as_fp32(kwargs))

    fp32_forward.fp32_policy = True
    return fp32_forward


def apply_fp32_policy(*models: nn.Module, modules: tuple = FP32_MODULES) -> list:
    """Make every submodule of `models` that is an instance of `modules` run in fp32 under autocast
    (its forward is replaced on the instance). Returns the wrapped modules; idempotent."""
    wrapped = []
    for model in models:
        for m in model.modules():
            if isinstance(m, modules) and not getattr(m.__dict__.get("forward"), "fp32_policy", False):
                m.forward = _fp32_forward(m)
                wrapped.append(m)
    return wrapped


def remove_fp32_policy(*models: nn.Module) -> None:
    for model in models:
        for m in model.modules():
            if getattr(m.__dict__.get("forward"), "fp32_policy", False):
                del m.__dict__["forward"]


@contextlib.contextmanager
def keep_fp32(*models: nn.Module, modules: tuple = FP32_MODULES):
    """`apply_fp32_policy` for the duration of a `with` block.

    >>> lin = nn.Linear(4, 4)
    >>> with keep_fp32(lin, modules=(nn.Linear,)), torch.autocast("cpu", dtype=torch.bfloat16):
    ...     lin(torch.ones(1, 4)).dtype
    torch.float32
    """
    wrapped = apply_fp32_policy(*models, modules=modules)
    try:
        yield
    finally:
        for m in wrapped:
            m.__dict__.pop("forward", None)
