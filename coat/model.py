"""COAT networks (section 3.1, Fig. 3): the hierarchical encoder E, the modulation encoder E_mod
and the StyleGAN2-type decoder D of eq. (4).

    features, keys = encoder(image, with_matching=True)     # {F^l}, l = 1..L, fine to coarse; what eq. 1 compares
    styles = modulation_encoder(content_maps, aligned_maps, masks, n)   # one modulation per layer
    image = decoder(styles)                                 # eq. (4)

PROPOSALS where the paper is silent (coat/README.md lists them all):
- E is a small residual CNN whose maps at `feature_strides` (R/4, R/8, R/16 in `paper`) are the
  scales; eq. 1, 2, 5, 6 compare a 1x1 projection of F^l and the cell's position
  (`matching_features`, L2-normalised in eq. 1), while eq. 3 swaps the full F^l. Matching then
  needs only structure, and what is carried keeps the texture.
- E_mod: per decoder layer k, strided convolutions of the map of the nearest scale down to 4x4,
  flattened, and a linear layer to a style vector (pSp's map2style). Layers k < n read the content
  maps F^{1,l}, layers k >= n the aligned maps F-hat^l; the confident-match mask is appended as one
  more channel (ones for content maps), so E_mod knows which positions hold style features.
- `spatial_modulation` (on in `tiny`, off in `paper`): besides the vector, E_mod gives each layer a
  per-pixel scale and shift (a 1x1 convolution of the same map, resized to the layer), applied
  after the modulated convolution, so aligned texture lands where it was matched.
- `cell_colour` (on in `tiny`): F^l also holds each cell's mean RGB (3 more channels), so the
  swapped features carry the style's colour exactly.
- D is trained jointly with E and E_mod (a frozen pretrained D can be loaded instead), no GAN loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

CONFIGS = {
    # 256 px, three scales at 64^2, 32^2, 16^2 (reference/coat.md), 14 modulation layers.
    "paper": dict(
        encoder=dict(resolution=256, channels=(64, 128, 256, 256, 512), feature_strides=(4, 8, 16), matching_dim=256,
                     cell_colour=False),
        modulation=dict(style_dim=512, hidden=256, spatial_modulation=False),
        decoder=dict(resolution=256, style_dim=512, channels=(512, 512, 512, 512, 256, 128, 64), start_resolution=4,
                     spatial_modulation=False),
        content_layers=7,
    ),
    # 64 px, CPU-sized: scales 32^2, 16^2, 8^2, 9 modulation layers.
    "tiny": dict(
        encoder=dict(resolution=64, channels=(32, 48, 64, 96), feature_strides=(2, 4, 8), matching_dim=64,
                     cell_colour=True),
        modulation=dict(style_dim=64, hidden=48, spatial_modulation=True),
        decoder=dict(resolution=64, style_dim=64, channels=(128, 128, 96, 64, 32), start_resolution=4,
                     spatial_modulation=True),
        content_layers=3,
    ),
}


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights ~ N(0, 1), scaled at run time)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = 1 / math.sqrt(in_dim)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


# ------------------------------------------------------------------ encoder E


class ResidualDown(nn.Module):
    """conv3x3 stride 2 -> conv3x3, plus an average-pooled 1x1 shortcut: (B, cin, H, W) -> (B, cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return (h + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


def position_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 2, h, w): the x and y of each cell centre in [-1, 1]."""
    h, w = x.shape[-2:]
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w * 2 - 1
    grid = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w)])
    return grid.expand(x.shape[0], -1, -1, -1)


class COATEncoder(ModelMixin, ConfigMixin):
    """The shared hierarchical encoder E: image (B, 3, R, R) in [-1, 1] -> [F^1, ..., F^L], the maps
    at `feature_strides` (fine to coarse); `matching_features` projects them for eq. 1.

    `channels[0]` is the stem width at full resolution; `channels[s]` the width after s halvings.
    `cell_colour` (PROPOSAL, on in `tiny`) appends each cell's mean RGB to F^l, so the features
    that eq. 3 swaps carry the style's colour exactly.
    """

    @register_to_config
    def __init__(self, resolution: int = 64, channels: tuple = (32, 48, 64, 96), feature_strides: tuple = (2, 4, 8),
                 matching_dim: int = 64, cell_colour: bool = False):
        super().__init__()
        strides = [2**s for s in range(len(channels))]
        if any(s not in strides[1:] for s in feature_strides) or list(feature_strides) != sorted(feature_strides):
            raise ValueError(f"feature_strides must be increasing powers of 2 in {strides[1:]}, got {feature_strides}")
        if resolution % max(feature_strides) or resolution // max(strides) < 2:
            raise ValueError(f"resolution {resolution} does not fit {len(channels) - 1} halvings")
        self.stem = nn.Conv2d(3, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(ResidualDown(channels[s], channels[s + 1]) for s in range(len(channels) - 1))
        widths = [channels[strides.index(s)] + (3 if cell_colour else 0) for s in feature_strides]
        self.matching_heads = nn.ModuleList(nn.Conv2d(c + 2, matching_dim, 1) for c in widths)

    @property
    def feature_channels(self) -> list:
        c = self.config
        return [c.channels[int(math.log2(s))] + (3 if c.cell_colour else 0) for s in c.feature_strides]

    @property
    def feature_sizes(self) -> list:
        return [self.config.resolution // s for s in self.config.feature_strides]

    def forward(self, image: torch.Tensor, with_matching: bool = False):
        """[F^1, ..., F^L], or ([F^l], [matching features]) with `with_matching` (one call, so a
        DDP-wrapped encoder sees every parameter it trains in its forward)."""
        r = self.config.resolution
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[-2:]) != (r, r):
            raise ValueError(f"the encoder takes images (B, 3, {r}, {r}), got {tuple(image.shape)}")
        x = self.stem(image)  # (B, c0, R, R)
        features, stride = [], 1
        for block in self.blocks:
            x = block(x)
            stride *= 2
            if stride in self.config.feature_strides:
                if self.config.cell_colour:  # PROPOSAL: the cell's mean RGB travels with F^l (eq. 3)
                    features.append(torch.cat([x, F.avg_pool2d(image, stride).to(x.dtype)], 1))
                else:
                    features.append(x)  # (B, c_s (+3), R / stride, R / stride)
        return (features, self.matching_features(features)) if with_matching else features

    def matching_features(self, features: list) -> list:
        """The vectors eq. 1 compares at each scale: (B, matching_dim, h, w) per scale (PROPOSAL: a
        1x1 projection of F^l and of the cell's (x, y) in [-1, 1], so structure can be matched while
        F^l also carries texture, and flat regions such as a plain background still have a position)."""
        return [head(torch.cat([f, position_channels(f)], 1)) for head, f in zip(self.matching_heads, features)]


# ------------------------------------------------------------------ modulation encoder E_mod


def decoder_layer_resolutions(resolution: int, start_resolution: int = 4) -> list:
    """The resolution of each modulated convolution of D: one at the start, two per doubling."""
    if resolution < start_resolution or resolution & (resolution - 1) or start_resolution & (start_resolution - 1):
        raise ValueError(f"resolution ({resolution}) and start_resolution ({start_resolution}) must be powers of 2, "
                         "resolution >= start")
    out, r = [start_resolution], start_resolution
    while r < resolution:
        r *= 2
        out += [r, r]
    return out


def layer_scales(layer_resolutions: list, feature_sizes: list) -> list:
    """For each decoder layer, the encoder scale l whose map is closest in size (ties: the coarser),
    pSp's coarse / middle / fine split."""
    out = []
    for r in layer_resolutions:
        gaps = [(abs(math.log2(r / s)), -s) for s in feature_sizes]
        out.append(min(range(len(feature_sizes)), key=lambda i: gaps[i]))
    return out


class MapToStyle(nn.Module):
    """pSp map2style: strided 3x3 convs down to 4x4, flattened, EqualLinear -> (B, style_dim);
    with `spatial`, also a 1x1 conv to (scale, shift) maps of the decoder layer's width."""

    def __init__(self, cin: int, size: int, hidden: int, style_dim: int, spatial_channels: int = 0):
        super().__init__()
        layers, c = [], cin
        while size > 4:
            layers += [nn.Conv2d(c, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, size = hidden, size // 2
        if not layers:
            layers = [nn.Conv2d(c, hidden, 3, padding=1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(hidden * size * size, style_dim)
        if spatial_channels:
            self.spatial = nn.Conv2d(cin, 2 * spatial_channels, 1)
            nn.init.zeros_(self.spatial.weight)
            nn.init.zeros_(self.spatial.bias)

    def forward(self, x):
        w = self.linear(self.convs(x).flatten(1))  # (B, style_dim)
        spatial = self.spatial(x) if hasattr(self, "spatial") else None  # (B, 2 C_k, h, w)
        return w, spatial


class COATModulationEncoder(ModelMixin, ConfigMixin):
    """E_mod of eq. (4): {F^{1,l}, F-hat^l} -> one modulation per decoder layer. Layers k < n read the
    content maps, layers k >= n the aligned maps (Fig. 4: smaller n, more aggressive transfer)."""

    @register_to_config
    def __init__(self, feature_channels: tuple = (48, 64, 96), feature_sizes: tuple = (32, 16, 8),
                 layer_resolutions: tuple = (4, 8, 8, 16, 16, 32, 32, 64, 64), layer_channels: tuple = (128,) * 9,
                 style_dim: int = 64, hidden: int = 48, spatial_modulation: bool = True):
        super().__init__()
        if len(feature_channels) != len(feature_sizes):
            raise ValueError("feature_channels and feature_sizes need one entry per scale")
        if len(layer_resolutions) != len(layer_channels):
            raise ValueError("layer_resolutions and layer_channels need one entry per decoder layer")
        scales = layer_scales(list(layer_resolutions), list(feature_sizes))
        self.scales = scales
        self.map_to_style = nn.ModuleList(
            MapToStyle(feature_channels[scale] + 1, feature_sizes[scale], hidden, style_dim,
                       layer_channels[k] if spatial_modulation else 0)
            for k, scale in enumerate(scales))

    @property
    def num_layers(self) -> int:
        return len(self.map_to_style)

    def forward(self, content_maps: list, aligned_maps: list, masks: list, n: int) -> list:
        """content_maps / aligned_maps: per scale (B, C_l, h_l, w_l); masks: per scale (B, 1, h_l, w_l)
        float, 1 where eq. 3 swapped in a style feature. Returns per layer (w_k (B, style_dim),
        spatial (B, 2 C_k, h_l, w_l) or None)."""
        if not (isinstance(n, int) and 0 <= n <= self.num_layers):
            raise ValueError(f"n (content layers) must be an int in 0..{self.num_layers}, got {n!r}")
        out = []
        for k, (scale, head) in enumerate(zip(self.scales, self.map_to_style)):
            if k < n:
                x = torch.cat([content_maps[scale], torch.ones_like(content_maps[scale][:, :1])], 1)
            else:
                x = torch.cat([aligned_maps[scale], masks[scale].to(aligned_maps[scale].dtype)], 1)
            out.append(head(x))
        return out


# ------------------------------------------------------------------ decoder D


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated 3x3 conv with demodulation, in the activation-scaling form (scale the
    input channels, one conv for the batch, scale the outputs): the same function, faster on CPU."""

    def __init__(self, cin: int, cout: int, style_dim: int, kernel: int = 3, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.scale = 1 / math.sqrt(cin * kernel * kernel)
        self.demodulate = demodulate

    def forward(self, x, w):  # x (B, Cin, H, W), w (B, style_dim)
        style = self.modulation(w)  # (B, Cin)
        weight = self.weight * self.scale
        x = F.conv2d(x * style[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=weight.shape[-1] // 2)
        if self.demodulate:
            energy = style.float().square() @ weight.float().square().sum((2, 3)).T  # (B, Cout)
            x = x * torch.rsqrt(energy + 1e-8)[:, :, None, None].to(x.dtype)
        return x


class StyledLayer(nn.Module):
    """Modulated conv (after 2x bilinear upsampling), optional per-pixel scale/shift, bias, lrelu. No noise
    input: the decoder reconstructs, it does not sample."""

    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, style_dim)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.upsample = upsample

    def forward(self, x, w, spatial=None):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)  # (B, Cout, H, W)
        if spatial is not None:  # PROPOSAL (spatial_modulation): aligned maps act per pixel
            spatial = F.interpolate(spatial.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
            gamma, beta = spatial.chunk(2, 1)
            x = x * (1 + gamma) + beta
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1).to(x.dtype), 0.2) * math.sqrt(2)


class COATDecoder(ModelMixin, ConfigMixin):
    """D of eq. (4), StyleGAN2-type: a learned constant at `start_resolution`, one modulated conv
    there and two per doubling (each layer's own modulation from E_mod), skip ToRGB outputs
    (modulated by the style of the layer they follow). Output (B, 3, R, R), unbounded (trained in
    [-1, 1]). `content_layers` only records the n the model was trained with (the pipeline's default);
    `content_layers_range` [LO, HI], when set, the range of n it was trained over (train/coat.py --n-range)."""

    @register_to_config
    def __init__(self, resolution: int = 64, style_dim: int = 64, channels: tuple = (128, 128, 96, 64, 32),
                 start_resolution: int = 4, spatial_modulation: bool = True, content_layers: int | None = None,
                 content_layers_range: list | None = None):
        super().__init__()
        resolutions = decoder_layer_resolutions(resolution, start_resolution)
        levels = int(math.log2(resolution // start_resolution)) + 1
        if len(channels) != levels:
            raise ValueError(f"channels needs one width per resolution {start_resolution}..{resolution} ({levels}), "
                             f"got {len(channels)}")
        self.constant = nn.Parameter(torch.randn(1, channels[0], start_resolution, start_resolution))
        self.layers = nn.ModuleList([StyledLayer(channels[0], channels[0], style_dim, upsample=False)])
        self.to_rgb = nn.ModuleList([ModulatedConv2d(channels[0], 3, style_dim, kernel=1, demodulate=False)])
        for level in range(1, levels):
            cin, cout = channels[level - 1], channels[level]
            self.layers.append(StyledLayer(cin, cout, style_dim, upsample=True))
            self.layers.append(StyledLayer(cout, cout, style_dim, upsample=False))
            self.to_rgb.append(ModulatedConv2d(cout, 3, style_dim, kernel=1, demodulate=False))
        self.rgb_bias = nn.Parameter(torch.zeros(levels, 3))
        self.layer_resolutions = resolutions

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_channels(self) -> list:
        return [layer.conv.weight.shape[0] for layer in self.layers]

    def forward(self, styles: list) -> torch.Tensor:
        """styles: one (w_k (B, style_dim), spatial (B, 2 C_k, h, w) or None) per layer, from E_mod."""
        if len(styles) != self.num_layers:
            raise ValueError(f"the decoder has {self.num_layers} modulated layers, got {len(styles)} styles")
        w0 = styles[0][0]
        x = self.constant.expand(len(w0), -1, -1, -1).to(w0.dtype)
        rgb = None
        for k, (layer, (w, spatial)) in enumerate(zip(self.layers, styles)):
            spatial = spatial if self.config.spatial_modulation else None
            x = layer(x, w, spatial)
            if k % 2 == 0:  # the last layer of a resolution: add its RGB to the upsampled skip image
                level = k // 2
                out = self.to_rgb[level](x, w) + self.rgb_bias[level].view(1, 3, 1, 1).to(x.dtype)
                if rgb is not None:
                    out = out + F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
                rgb = out
        return rgb  # (B, 3, R, R)


def network_configs(config: str | dict = "tiny") -> tuple[dict, dict, dict]:
    """(encoder, modulation encoder, decoder) constructor arguments of a CONFIGS entry, with the
    sizes that tie them together filled in."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown config {config!r}; choose one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    enc, mod, dec = dict(config["encoder"]), dict(config["modulation"]), dict(config["decoder"])
    if enc["resolution"] != dec["resolution"]:
        raise ValueError("encoder and decoder resolutions differ")
    channels, extra = enc["channels"], 3 if enc.get("cell_colour") else 0
    mod["feature_channels"] = tuple(channels[int(math.log2(s))] + extra for s in enc["feature_strides"])
    mod["feature_sizes"] = tuple(enc["resolution"] // s for s in enc["feature_strides"])
    resolutions = decoder_layer_resolutions(dec["resolution"], dec["start_resolution"])
    mod["layer_resolutions"] = tuple(resolutions)
    widths = [dec["channels"][0]] + [c for c in dec["channels"][1:] for _ in range(2)]
    mod["layer_channels"] = tuple(widths)
    mod["style_dim"] = dec["style_dim"]
    mod["spatial_modulation"] = dec["spatial_modulation"]
    return enc, mod, dec
