"""Small StyleGAN2-style layers shared by the generator, the discriminator and the spatial
transformer (equalised learning rate, FIR blur/up/down-sampling, fused leaky ReLU).

Attribute names follow the layout of the authors' released checkpoints (`weight`, `bias`,
`kernel`, Sequential indices), so that official state_dicts load name for name.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def make_kernel(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR kernel: outer product of `taps`, normalised to sum 1. (4, 4) for [1,3,3,1]."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2): the gain keeps activations at unit variance."""
    out = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    if not torch.is_grad_enabled():  # inference: the same operations in place on the fresh sum
        return F.leaky_relu_(out, slope).mul_(SQRT2)
    return F.leaky_relu(out, slope) * SQRT2


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (before, after) on both axes, filter, downsample.

    x: (B, C, H, W); kernel: (kh, kw) applied depthwise.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = kernel.flip(0, 1)[None, None].to(x.dtype).expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


class Blur(nn.Module):
    """FIR low-pass filter used around strided/transposed convolutions (anti-aliasing)."""

    def __init__(self, pad, upsample_factor: int = 1, taps=(1, 3, 3, 1)):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = tuple(pad)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (zero insertion + [1,3,3,1] filter)."""

    def __init__(self, factor: int = 2, taps=(1, 3, 3, 1)):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d with weights ~ N(0, 1) scaled at run time by 1/sqrt(fan_in) (equalised lr)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised lr; `lr_mul` slows the mapping network (StyleGAN's 0.01)."""

    def __init__(self, in_dim, out_dim, bias=True, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = 1 / math.sqrt(in_dim) * lr_mul
        self.lr_mul, self.activation = lr_mul, activation

    def forward(self, x):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d (stride 2 when downsampling) -> [FusedLeakyReLU]."""

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False, bias=True, activate=True):
        layers = []
        if downsample:
            p = 2 + (kernel_size - 1)  # len(taps) - factor + kernel - 1
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual block of the StyleGAN2 discriminator: two 3x3 convs and a 1x1 skip, /sqrt(2)."""

    def __init__(self, in_channels, out_channels, downsample=True):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=downsample)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=downsample, activate=False, bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class BilinearDownsample(nn.Module):
    """Anti-aliased 2x reduction of the transformer's input: reflection pad 1, separable
    [1,3,3,1]/8 tent, horizontal then vertical, stride 2."""

    def __init__(self, channels: int = 3):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
        self.register_buffer("kernel_horz", taps.view(1, 1, 1, 4).repeat(channels, 1, 1, 1))
        self.register_buffer("kernel_vert", taps.view(1, 1, 4, 1).repeat(channels, 1, 1, 1))

    def forward(self, x):  # (B, C, H, W) -> (B, C, H/2, W/2)
        c = x.shape[1]
        x = F.pad(x, [1, 1, 1, 1], mode="reflect")
        x = F.conv2d(x, self.kernel_horz.to(x.dtype), stride=(1, 2), groups=c)
        return F.conv2d(x, self.kernel_vert.to(x.dtype), stride=(2, 1), groups=c)


def stylegan_channels(resolution: int, channel_multiplier: float, max_channels: int = 512) -> int:
    """Channel count at a resolution, as in StyleGAN2: 512 up to 32 px, then halving, times the multiplier."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    scaled = base[resolution] if resolution <= 32 else int(base[resolution] * channel_multiplier)
    return min(max_channels, scaled)
