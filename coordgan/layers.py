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

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False):
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

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, kernel_size // 2
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activation else out


class ModulatedConv2d(nn.Module):
    """StyleGAN2 weight (de)modulation, computed on the activations (the non-fused form).

    Scaling input channels by the style s, one ordinary convolution for the whole batch, then
    scaling output channels by d = 1 / sqrt(sum_{i,k} (w_{o,i,k} s_i)^2 + eps) is the same
    function as convolving every sample with its own modulated weight, and ~1.6x faster on a CPU
    (measured in ../shared/DESIGN.md).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.modulation(w)  # (B, in)
        weight = self.weight * self.scale
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} w^2 s_i^2 = (s^2) @ (sum_k w^2)^T  -> (B, out)
            demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum((2, 3)).t() + 1e-8)
            out = out * demod[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if not randomize:
            return x
        return x + self.weight * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)


class StyledConv(nn.Module):
    """Modulated conv (3x3 by default), optional 2x bilinear upsampling before it, noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False, kernel_size: int = 3):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor, randomize_noise: bool = True) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.noise(self.conv(x, w), randomize_noise)
        return F.leaky_relu(out + self.bias[:, None, None], 0.2) * SQRT2


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, added to the (upsampled) skip image."""

    def __init__(self, in_channels: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias[:, None, None]
        if skip is not None:
            if skip.shape[-1] != out.shape[-1]:
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
