"""CoordGAN's two discriminators: the StyleGAN2 image discriminator (L_GAN) and the patch
co-occurrence discriminator of Swapping Autoencoder for structure swapping (eq. 5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .layers import EqualConv2d, EqualLinear, ResBlock

DISCRIMINATOR_CONFIGS = {
    "paper": dict(resolution=128, channels=(128, 256, 512, 512, 512, 512)),
    "tiny": dict(resolution=64, channels=(32, 64, 128, 128, 128)),
}
PATCH_CONFIGS = {
    "paper": dict(crop_size=32, channels=(64, 128, 256, 256), num_crops=8, crop_fraction=(1 / 8, 1 / 4)),
    "tiny": dict(crop_size=16, channels=(32, 64, 64), num_crops=8, crop_fraction=(1 / 4, 1 / 2)),
}


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean over features of the std over a group of samples as one more channel."""
    b, c, h, w = x.shape
    g = min(group, b)
    while b % g:
        g -= 1
    y = x.reshape(g, b // g, c, h, w)
    std = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (b // g,)
    std = std.repeat(g)[:, None, None, None].expand(b, 1, h, w)
    return torch.cat([x, std], 1)


class ImageDiscriminator(ModelMixin, ConfigMixin):
    """StyleGAN2 residual discriminator with minibatch standard deviation (group 4).

    `channels[i]` is the width after the i-th residual block; the blocks halve the resolution
    down to 4x4, so len(channels) = log2(resolution) - 1 (the first entry is the from-RGB width).
    """

    @register_to_config
    def __init__(self, resolution: int = 64, channels: tuple = (32, 64, 128, 128, 128), mbstd_group: int = 4):
        super().__init__()
        blocks = int(math.log2(resolution)) - 2
        if 2 ** (blocks + 2) != resolution or len(channels) != blocks + 1:
            raise ValueError("resolution must be a power of two and channels have log2(resolution) - 1 = "
                             f"{blocks + 1} entries")
        self.from_rgb = EqualConv2d(3, channels[0], 1, activation=True)
        self.blocks = nn.Sequential(*[ResBlock(channels[i], channels[i + 1]) for i in range(blocks)])
        c = channels[-1]
        self.final_conv = EqualConv2d(c + 1, c, 3, activation=True)
        self.final_linear = nn.Sequential(EqualLinear(c * 16, c, activation=True), EqualLinear(c, 1))
        self.mbstd_group = mbstd_group

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_rgb(image))  # (B, c, 4, 4)
        x = self.final_conv(minibatch_stddev(x, self.mbstd_group))
        return self.final_linear(x.flatten(1))[:, 0]  # (B,) logits


def random_crops(images: torch.Tensor, num_crops: int, fraction: tuple[float, float], size: int,
                 generator=None) -> torch.Tensor:
    """`num_crops` random square crops per image, side a `fraction` of the image side, resized
    to `size` and flipped at random: (B, 3, H, W) -> (B, num_crops, 3, size, size). Differentiable."""
    b = images.shape[0]
    n = b * num_crops
    opts = dict(device=images.device, dtype=images.dtype)
    rand = torch.rand(4, n, generator=generator, device=images.device).to(images.dtype)
    scale = fraction[0] + (fraction[1] - fraction[0]) * rand[0]  # crop side / image side
    cx = (2 * rand[1] - 1) * (1 - scale)  # keep the crop inside the image
    cy = (2 * rand[2] - 1) * (1 - scale)
    flip = torch.where(rand[3] < 0.5, -1.0, 1.0).to(**opts)
    theta = torch.zeros(n, 2, 3, **opts)
    theta[:, 0, 0], theta[:, 0, 2] = scale * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = scale, cy
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    source = images.repeat_interleave(num_crops, 0)
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crops.reshape(b, num_crops, 3, size, size)


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """Patch co-occurrence discriminator: is this crop's texture the reference image's texture?

    A conv trunk maps a crop to a feature (2x2 x channels[-1]); the head scores the feature of a
    target crop concatenated with the mean feature of the reference image's crops.
    """

    @register_to_config
    def __init__(self, crop_size: int = 16, channels: tuple = (32, 64, 64), num_crops: int = 8,
                 crop_fraction: tuple = (0.25, 0.5)):
        super().__init__()
        downs = int(math.log2(crop_size)) - 1
        if 2 ** (downs + 1) != crop_size or len(channels) != downs:
            raise ValueError(f"crop_size must be a power of two and channels have log2(crop_size) - 1 = {downs} "
                             "entries")
        layers: list[nn.Module] = [EqualConv2d(3, channels[0], 3, activation=True)]
        c = channels[0]
        for out_c in channels:
            layers.append(ResBlock(c, out_c))
            c = out_c
        self.trunk = nn.Sequential(*layers)
        feature = c * 4
        self.head = nn.Sequential(EqualLinear(2 * feature, feature, activation=True),
                                  EqualLinear(feature, feature // 2, activation=True), EqualLinear(feature // 2, 1))

    def crops(self, images: torch.Tensor, generator=None) -> torch.Tensor:
        c = self.config
        return random_crops(images, c.num_crops, tuple(c.crop_fraction), c.crop_size, generator)

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, s, s) crops -> (B, N, F) features."""
        b, n = crops.shape[:2]
        return self.trunk(crops.flatten(0, 1)).flatten(1).reshape(b, n, -1)

    def forward(self, target_crops: torch.Tensor, reference_crops: torch.Tensor) -> torch.Tensor:
        """Logits (B, N): each target crop against the mean of its image's reference crops."""
        target = self.features(target_crops)  # (B, N, F)
        reference = self.features(reference_crops).mean(1, keepdim=True).expand_as(target)
        return self.head(torch.cat([target, reference], -1))[..., 0]
