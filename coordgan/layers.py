"""Small StyleGAN2-style layers with equalized learning rate (Karras et al., 2020).

Plain int arguments, no config: the `ModelMixin` networks in model.py, encoder.py and
discriminator.py compose these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer whose weight is scaled at run time by lr_mul / sqrt(fan_in)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activation else out


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate; optional leaky ReLU (gain sqrt 2) after it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, kernel_size // 2
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activation else out


def fir_kernel() -> torch.Tensor:
    """StyleGAN2's 4x4 FIR filter for 2x upsampling: ([1,3,3,1] x [1,3,3,1]) / 64, times 4 (the gain of zero
    insertion)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(k, k) / k.sum() ** 2 * 4


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Depthwise 2-d FIR filter of every channel after zero padding (pad before, pad after) on both axes.
    The kernels used here are symmetric, so correlation and convolution agree."""
    c = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, kernel.to(x.dtype)[None, None].expand(c, 1, *kernel.shape), groups=c)


def upsample_fir(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x upsampling as in StyleGAN2: zero insertion, then the FIR filter (pad 2 before, 1 after)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return fir_filter(up, kernel, (2, 1))


def demodulation(style: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's demodulation factors d (B, out) = 1 / sqrt(sum_{i,k} (w_{o,i,k} s_i)^2 + eps), as
    (s^2) @ (sum_k w^2)^T: a matrix-vector product, kept in fp32 by the mixed-precision policy (precision.py)."""
    return torch.rsqrt(style.pow(2) @ weight.pow(2).sum((2, 3)).t() + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 weight (de)modulation, computed on the activations (the non-fused form).

    Scaling input channels by the style s, one ordinary convolution for the whole batch, then
    scaling output channels by d = 1 / sqrt(sum_{i,k} (w_{o,i,k} s_i)^2 + eps) is the same
    function as convolving every sample with its own modulated weight, and ~1.6x faster on a CPU
    (measured in ../shared/DESIGN.md). `upsample_fir`: a 2x upsampling conv as in StyleGAN2 (a
    stride-2 transposed convolution followed by the FIR filter), the authors' 512 px stages.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample_fir: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.padding = kernel_size // 2
        self.upsample_fir = upsample_fir
        if upsample_fir:  # a constant, rebuilt by the constructor: not part of the state_dict
            self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.modulation(w)  # (B, in)
        weight = self.weight * self.scale
        if self.upsample_fir:  # (B, in, H, W) -> (B, out, 2H + 1, 2W + 1) -> FIR (pad 1) -> (B, out, 2H, 2W)
            out = F.conv_transpose2d(x * style[:, :, None, None], weight.transpose(0, 1), stride=2)
            out = fir_filter(out, self.fir, (1, 1))
        else:
            out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            demod = demodulation(style, weight)
            # in place where it keeps the dtype; a bf16 conv output times fp32 factors (the mixed
            # path) becomes fp32 instead of being rounded to bf16 a second time
            in_place = not torch.is_grad_enabled() and out.dtype == demod.dtype
            out = out.mul_(demod[:, :, None, None]) if in_place else out * demod[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, randomize: bool = True, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Adds weight * noise: the given (B, 1, H, W) noise, else a fresh draw from the global RNG
        (randomize), else nothing."""
        if noise is None and not randomize:
            return x
        if noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated conv (3x3 by default), optional 2x upsampling, noise, bias, leaky ReLU.

    upsample: False, "bilinear" (or True: bilinear resize before the conv) or "fir" (StyleGAN2's
    transposed conv + FIR filter, the authors' 512 px stages)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool | str = False,
                 kernel_size: int = 3):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample_fir=upsample == "fir")
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor, randomize_noise: bool = True,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.upsample and self.upsample != "fir":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.noise(self.conv(x, w), randomize_noise, noise)
        return F.leaky_relu(out + self.bias[:, None, None], 0.2) * SQRT2


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, added to the (upsampled) skip image.
    upsample "bilinear" or "fir" (StyleGAN2's zero insertion + FIR filter) for a smaller skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: str = "bilinear"):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))
        self.upsample = upsample
        if upsample == "fir":
            self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias[:, None, None]
        if skip is not None:
            if skip.shape[-1] != out.shape[-1]:
                if self.upsample == "fir":
                    skip = upsample_fir(skip, self.fir)
                else:
                    skip = F.interpolate(skip, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out + skip
        return out


class ResBlock(nn.Module):
    """Discriminator/encoder residual block: two convs, 2x average-pool downsampling, skip / sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True):
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3, activation=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        skip = self.skip(x)
        if self.downsample:
            out, skip = F.avg_pool2d(out, 2), F.avg_pool2d(skip, 2)
        return (out + skip) / SQRT2


def mapping_network(z_dim: int, w_dim: int, num_layers: int, lr_mul: float) -> nn.Sequential:
    """StyleGAN's mapping network: PixelNorm, then `num_layers` equalized linears with leaky ReLU."""
    layers: list[nn.Module] = [PixelNorm()]
    for i in range(num_layers):
        layers.append(EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activation=True))
    return nn.Sequential(*layers)
