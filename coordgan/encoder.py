"""CoordGAN encoder (section 3.5): an image to a structure code w_s and a W+ texture code.

Residual conv trunk down to 8x8; the structure branch (1x1 convs, flatten, linear) keeps the
spatial layout that a correspondence needs; the texture branch (stride-2 convs, average pool,
one linear head per W+ entry) keeps only global statistics. Outputs live in w space (they skip
the mapping networks), so the generator's `correspondence_map(w_s)` and `synthesize` take them.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .layers import EqualConv2d, EqualLinear, ResBlock

ENCODER_CONFIGS = {
    "paper": dict(resolution=128, channels=(32, 64, 128, 256, 512), structure_channels=64,
                  texture_channels=(1024, 2048), w_dim=512, num_ws=12),
    "paper-512": dict(resolution=512, channels=(16, 32, 32, 64, 128, 256, 512), structure_channels=64,
                      texture_channels=(1024, 2048), w_dim=512, num_ws=16),
    "tiny": dict(resolution=64, channels=(32, 64, 128, 128), structure_channels=16, texture_channels=(256, 256),
                 w_dim=64, num_ws=8),
}  # fmt: skip


class CoordGANEncoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        resolution: int = 64,
        channels: tuple = (32, 64, 128, 128),
        structure_channels: int = 16,
        texture_channels: tuple = (256, 256),
        w_dim: int = 64,
        num_ws: int = 8,
    ):
        super().__init__()
        downs = len(channels) - 1
        if resolution // 2**downs != 8 or resolution % 2**downs:
            raise ValueError(f"channels must have log2(resolution / 8) + 1 = {int(math.log2(resolution / 8)) + 1} "
                             "entries to reach 8x8")
        self.from_rgb = EqualConv2d(3, channels[0], 3, activation=True)
        self.trunk = nn.Sequential(*[ResBlock(channels[i], channels[i + 1]) for i in range(downs)])
        c = channels[-1]
        self.structure_branch = nn.Sequential(
            EqualConv2d(c, c, 1, activation=True),
            EqualConv2d(c, structure_channels, 1, activation=True),
            nn.Flatten(),
            EqualLinear(structure_channels * 64, w_dim),
        )
        texture: list[nn.Module] = []
        for out_c in texture_channels:
            texture.append(EqualConv2d(c, out_c, 3, stride=2, activation=True))
            c = out_c
        self.texture_branch = nn.Sequential(*texture, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.texture_heads = nn.ModuleList([EqualLinear(c, w_dim) for _ in range(num_ws)])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, R, R) in [-1, 1] -> structure code (B, w_dim), W+ texture code (B, num_ws, w_dim)."""
        if image.shape[-2:] != (self.config.resolution, self.config.resolution):
            raise ValueError(f"the encoder takes {self.config.resolution}x{self.config.resolution} images, got "
                             f"{tuple(image.shape[-2:])}")
        features = self.trunk(self.from_rgb(image))  # (B, c, 8, 8)
        structure_code = self.structure_branch(features)
        pooled = self.texture_branch(features)
        texture_code = torch.stack([head(pooled) for head in self.texture_heads], 1)
        return structure_code, texture_code


# ----------------------------------------------------------------------------- the authors' encoder
class _EqualConv(nn.Module):
    """An equalized-lr conv without padding (the layers around it pad), optional bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride)


class _BiasLeakyReLU(nn.Module):
    """leaky_relu(x + bias, 0.2) * sqrt(2): StyleGAN2's fused activation, its bias a separate tensor."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias[:, None, None], 0.2) * math.sqrt(2)


class _Blur(nn.Module):
    """A normalised separable binomial filter; its kernel is a constant the authors' state_dict stores."""

    def __init__(self, taps: list):
        super().__init__()
        k = torch.tensor(taps, dtype=torch.float32)
        self.register_buffer("kernel", torch.outer(k, k) / k.sum() ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel.to(x.dtype)[None, None].expand(c, 1, *self.kernel.shape), groups=c)


class _ConvLayer(nn.Sequential):
    """Pad -> [Blur] -> Conv -> [Act]: the authors' encoder layer, with their submodule names (Conv, Act, Blur).

    pad (left, right, top, bottom); reflect or zeros."""

    def __init__(self, in_channels, out_channels, kernel_size, pad=(0, 0, 0, 0), reflect=False, blur=None, stride=1,
                 activate=True, bias=False):
        layers = {}
        if any(pad):
            layers["Pad"] = nn.ReflectionPad2d(pad) if reflect else nn.ZeroPad2d(pad)
        if blur is not None:
            layers["Blur"] = _Blur(blur)
        layers["Conv"] = _EqualConv(in_channels, out_channels, kernel_size, stride, bias=bias)
        if activate:
            layers["Act"] = _BiasLeakyReLU(out_channels)
        super().__init__(OrderedDict(layers))


class _ResBlockDown(nn.Module):
    """(conv2(conv1(x)) + skip(x)) / sqrt 2, halving the size with blurred stride-2 convs."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = _ConvLayer(in_channels, in_channels, 3, pad=(1, 1, 1, 1), reflect=True)
        self.conv2 = _ConvLayer(in_channels, out_channels, 3, pad=(2, 1, 2, 1), reflect=True, blur=[1, 2, 1], stride=2)
        self.skip = _ConvLayer(in_channels, out_channels, 1, pad=(1, 0, 1, 0), blur=[1, 2, 1], stride=2, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class CoordGANOfficialEncoder(ModelMixin, ConfigMixin):
    """The encoder of the authors' code (NVlabs/CoordGAN model/Encoder.py, itself Swapping
    Autoencoder's StyleGAN2 ResNet encoder), layer for layer and with the authors' state_dict key
    names, so their `e` checkpoint entry loads as it is. Every width is fixed as in their code:
    128x128 input, 32..512 channels down to 8x8, a 64-channel spatial code flattened into a 512-d
    structure code, and a 2048-d pooled code into 12 W+ texture heads.
    """

    @register_to_config
    def __init__(self, resolution: int = 128, w_dim: int = 512, num_ws: int = 12):
        super().__init__()
        if (resolution, w_dim) != (128, 512):
            raise ValueError(f"the authors' encoder is fixed at 128x128 input and 512-d codes, got {resolution} "
                             f"and {w_dim}")
        nc = [2 ** (5 + i) for i in range(5)]  # 32, 64, 128, 256, 512
        self.sp_fc = EqualLinear(64 * 8 * 8, w_dim)
        self.FromRGB = _ConvLayer(3, nc[0], 1)
        self.DownToSpatialCode = nn.Sequential(OrderedDict(
            (f"ResBlockDownBy{2**i}", _ResBlockDown(nc[i], nc[i + 1])) for i in range(4)))  # fmt: skip
        self.ToSpatialCode = nn.Sequential(_ConvLayer(nc[4], nc[4], 1),
                                           _ConvLayer(nc[4], 64, 1, activate=False, bias=True))
        self.DownToGlobalCode = nn.Sequential(OrderedDict([
            ("ConvLayerDownBy16", _ConvLayer(nc[4], 1024, 3, pad=(1, 0, 1, 0), blur=[1], stride=2)),
            ("ConvLayerDownBy32", _ConvLayer(1024, 2048, 3, pad=(1, 0, 1, 0), blur=[1], stride=2)),
        ]))  # fmt: skip
        self.ToGlobalCode = nn.ModuleList([EqualLinear(2048, w_dim) for _ in range(num_ws)])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, 128, 128) in [-1, 1] -> structure code (B, 512), W+ texture code (B, num_ws, 512)."""
        if image.shape[-2:] != (128, 128):
            raise ValueError(f"the authors' encoder takes 128x128 images, got {tuple(image.shape[-2:])}")
        features = self.DownToSpatialCode(self.FromRGB(image))  # (B, 512, 8, 8)
        structure_code = self.sp_fc(self.ToSpatialCode(features).flatten(1))  # (B, 64 * 8 * 8) -> (B, 512)
        pooled = self.DownToGlobalCode(features).mean((2, 3))  # (B, 2048)
        texture_code = torch.stack([head(pooled) for head in self.ToGlobalCode], 1)  # (B, num_ws, 512)
        return structure_code, texture_code
