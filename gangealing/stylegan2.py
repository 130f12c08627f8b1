"""StyleGAN2 generator and discriminator (Karras et al., 2020), the frozen generator G of
GANgealing (section 3 of the paper).

The `paper` configs reproduce the authors' released `g_ema` layer for layer (256 px and the
128 px CelebA model), with the same state_dict key names, so `convert_official` maps their
tensors one to one. Modulated convolutions modulate the activations rather than the weights
(StyleGAN2's non-fused form: scale the input channels, one ordinary conv for the batch, scale
the output channels by the demodulation factor), which is the same function and faster on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from .layers import Blur, ConvLayer, EqualLinear, FusedLeakyReLU, ResBlock, Upsample, stylegan_channels

GENERATOR_CONFIGS = {
    "paper": dict(resolution=256, style_dim=512, n_mlp=8, channel_multiplier=2.0),
    "paper-128": dict(resolution=128, style_dim=512, n_mlp=8, channel_multiplier=2.0),  # CelebA model
    "tiny": dict(resolution=64, style_dim=128, n_mlp=4, channel_multiplier=0.5, max_channels=128),
    "micro": dict(resolution=32, style_dim=32, n_mlp=2, channel_multiplier=0.25, max_channels=32),
}


class PixelNorm(nn.Module):
    def forward(self, z):  # (B, D)
        return z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Modulated convolution with weight demodulation (StyleGAN2 eq. 1-3)."""

    def __init__(self, in_channels, out_channels, kernel_size, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        if upsample:  # transposed conv (stride 2) followed by a blur; pads from StyleGAN2
            p = 4 - 2 - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding, self.upsample, self.demodulate = kernel_size // 2, upsample, demodulate

    def forward(self, x, w):  # x (B, Cin, H, W), w (B, style_dim)
        b = x.shape[0]
        style = self.modulation(w)  # (B, Cin)
        weight = (self.weight[0] * self.scale).to(x.dtype)  # (Cout, Cin, k, k)
        x = x * style.view(b, -1, 1, 1).to(x.dtype)
        if self.upsample:
            x = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))  # (B, Cout, 2H, 2W)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            energy = weight.float().square().sum((2, 3)) @ style.float().square().T  # (Cout, B)
            x = x * torch.rsqrt(energy.T + 1e-8).view(b, -1, 1, 1).to(x.dtype)
        return x


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise=None):  # noise (B or 1, 1, H, W); None draws fresh noise
        if noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class StyledConv(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x, w, noise=None):
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), added to the upsampled skip image."""

    def __init__(self, in_channels, style_dim, upsample=True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)

    def forward(self, x, w, skip=None):
        out = self.conv(x, w) + self.bias.to(x.dtype)
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int):
        return self.input.expand(batch, -1, -1, -1)


class StyleGAN2Generator(ModelMixin, ConfigMixin):
    """StyleGAN2 generator G(w): mapping network z -> w, then a synthesis network with one W+
    input per layer (`num_latents` = 2 log2(resolution) - 2), so targets can be style-mixed
    (section 3.2 of GANgealing), truncation, and fixed per-layer noise buffers.

    >>> g = StyleGAN2Generator(**GENERATOR_CONFIGS["micro"])
    >>> g(torch.randn(2, 32)).shape
    torch.Size([2, 3, 32, 32])
    """

    @register_to_config
    def __init__(self, resolution: int = 256, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2.0,
                 max_channels: int = 512, lr_mlp: float = 0.01):
        super().__init__()
        log_size = int(math.log2(resolution))
        if 2**log_size != resolution or resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        ch = {2**i: stylegan_channels(2**i, channel_multiplier, max_channels) for i in range(2, log_size + 1)}
        self.style = nn.Sequential(PixelNorm(),
                                   *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                 activation=True) for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        self.num_layers = (log_size - 2) * 2 + 1
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.num_latents = log_size * 2 - 2
        self.resolution, self.style_dim = resolution, style_dim

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.style_dim, generator=generator).to(self.input.input.device)
        return self.mapping(z).mean(0, keepdim=True)  # (1, style_dim)

    def fixed_noise(self) -> list:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def to_wplus(self, latents, input_is_latent=False, truncation=1.0, truncation_latent=None, inject_index=None):
        """z / w (B, D), W+ (B, num_latents, D) or a list of two for style mixing -> W+ (B, num_latents, D).

        Truncation < 1 mixes the truncated latent c + t (w - c) into the first `inject_index`
        layers and keeps w in the rest (all layers when inject_index = num_latents).
        """
        styles = list(latents) if isinstance(latents, (list, tuple)) else [latents]
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. generator.mean_latent() or the "
                                 "target's lat_mean)")
            w = styles[0]
            styles = [truncation_latent + truncation * (w - truncation_latent), w]  # mixed at inject_index
        n = self.num_latents
        if len(styles) == 1:
            s = styles[0]
            return s if s.ndim == 3 else s[:, None].expand(-1, n, -1)
        if inject_index is None:
            inject_index = int(torch.randint(1, n, ()).item())
        first = styles[0] if styles[0].ndim == 3 else styles[0][:, None].expand(-1, n, -1)
        second = styles[1] if styles[1].ndim == 3 else styles[1][:, None].expand(-1, n, -1)
        return torch.cat([first[:, :inject_index], second[:, inject_index:]], 1)

    def synthesis(self, wplus: torch.Tensor, noise=None, randomize_noise: bool = True) -> torch.Tensor:
        """W+ (B, num_latents, D) -> image (B, 3, R, R), raw (not clamped)."""
        if wplus.ndim != 3 or wplus.shape[1] != self.num_latents:
            raise ValueError(f"W+ must be (B, {self.num_latents}, {self.style_dim}), got {tuple(wplus.shape)}")
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        x = self.input(wplus.shape[0])  # (B, 512, 4, 4)
        x = self.conv1(x, wplus[:, 0], noise[0])
        skip = self.to_rgb1(x, wplus[:, 1])
        i = 1
        layers = zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs)
        for up_conv, conv, n1, n2, to_rgb in layers:
            x = up_conv(x, wplus[:, i], n1)  # (B, C, 2H, 2W)
            x = conv(x, wplus[:, i + 1], n2)
            skip = to_rgb(x, wplus[:, i + 2], skip)
            i += 2
        return skip

    def forward(self, latents, input_is_latent=False, truncation=1.0, truncation_latent=None, inject_index=None,
                noise=None, randomize_noise=True, return_latents=False):
        wplus = self.to_wplus(latents, input_is_latent, truncation, truncation_latent, inject_index)
        image = self.synthesis(wplus, noise, randomize_noise)
        return (image, wplus) if return_latents else image


class StyleGAN2Discriminator(ModelMixin, ConfigMixin):
    """StyleGAN2 residual discriminator with minibatch standard deviation."""

    @register_to_config
    def __init__(self, resolution: int = 256, channel_multiplier: float = 2.0, max_channels: int = 512):
        super().__init__()
        log_size = int(math.log2(resolution))
        ch = {2**i: stylegan_channels(2**i, channel_multiplier, max_channels) for i in range(2, log_size + 1)}
        blocks = [ConvLayer(3, ch[resolution], 1)]
        for i in range(log_size, 2, -1):
            blocks.append(ResBlock(ch[2**i], ch[2 ** (i - 1)]))
        self.convs = nn.Sequential(*blocks)
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1))

    def forward(self, x):  # (B, 3, R, R) -> (B, 1) logits
        x = self.convs(x)  # (B, C, 4, 4)
        b, c, h, w = x.shape
        group = min(b, 4)
        while b % group:
            group -= 1
        std = x.view(group, -1, c, h, w).float().var(0, unbiased=False).add(1e-8).sqrt().mean((1, 2, 3))
        std = std.to(x.dtype).view(-1, 1, 1, 1).repeat(group, 1, h, w)  # (B, 1, 4, 4)
        x = self.final_conv(torch.cat([x, std], 1))
        return self.final_linear(x.flatten(1))
