"""CoordGAN encoder (section 3.5): an image to a structure code w_s and a W+ texture code.

Residual conv trunk down to 8x8; the structure branch (1x1 convs, flatten, linear) keeps the
spatial layout that a correspondence needs; the texture branch (stride-2 convs, average pool,
one linear head per W+ entry) keeps only global statistics. Outputs live in w space (they skip
the mapping networks), so the generator's `correspondence_map(w_s)` and `synthesize` take them.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .layers import EqualConv2d, EqualLinear, ResBlock

ENCODER_CONFIGS = {
    "paper": dict(resolution=128, channels=(32, 64, 128, 256, 512), structure_channels=64, texture_channels=(1024, 2048), w_dim=512, num_ws=12),
    "paper-512": dict(resolution=512, channels=(16, 32, 32, 64, 128, 256, 512), structure_channels=64, texture_channels=(1024, 2048), w_dim=512, num_ws=16),
    "tiny": dict(resolution=64, channels=(32, 64, 128, 128), structure_channels=16, texture_channels=(256, 256), w_dim=64, num_ws=8),
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
            raise ValueError(f"channels must have log2(resolution / 8) + 1 = {int(math.log2(resolution / 8)) + 1} entries to reach 8x8")
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
            raise ValueError(f"the encoder takes {self.config.resolution}x{self.config.resolution} images, got {tuple(image.shape[-2:])}")
        features = self.trunk(self.from_rgb(image))  # (B, c, 8, 8)
        structure_code = self.structure_branch(features)
        pooled = self.texture_branch(features)
        texture_code = torch.stack([head(pooled) for head in self.texture_heads], 1)
        return structure_code, texture_code
