"""CoordGAN generator (Mu et al., CVPR 2022, section 3): structure and texture mapping networks,
the coordinate warping network (eq. 3), a Fourier positional encoding, and a modulated generator
at constant resolution with the correspondence map concatenated at every layer (section 3.3).

    G(z_s, z_t) = A(C^{w_s}, w_t)                                          (eq. 2)
    C^{w_s}(i, j) = P([C(i, j), w_s])   (a three-layer MLP, tanh output)    (eq. 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .correspondence import canonical_grid
from .layers import StyledConv, ToRGB, mapping_network

# Named configurations. `paper`: the 128x128, 512-channel model of the paper (11 styled convs,
# W+ of 12). `tiny`: trains on 2 CPU cores; the coordinate branch runs at 32x32 and one
# upsampling stage (no coordinate concatenation, as in the paper's 512px model) gives 64x64.
CONFIGS = {
    "paper": dict(coordinate_resolution=128, channels=512, num_pairs=5, upsample_channels=(), z_dim=512,
                  w_dim=512, mapping_layers=8, warp_hidden=512),
    "paper-512": dict(coordinate_resolution=128, channels=512, num_pairs=5, upsample_channels=(128, 64), z_dim=512,
                      w_dim=512, mapping_layers=8, warp_hidden=512),
    "tiny": dict(coordinate_resolution=32, channels=64, num_pairs=2, upsample_channels=(32,), z_dim=64,
                 w_dim=64, mapping_layers=4, warp_hidden=64, kernel_size=1, template_layers=3),
}  # fmt: skip
# The authors' released models (NVlabs/CoordGAN configs/*.yaml), which convert_official.py loads: the
# `paper` networks with the authors' canonical grid (linspace(-1, 1): the outer pixels on the border)
# and, at 512 px, StyleGAN2's transposed-conv + FIR upsampling. The three 128 px models share one layout.
_OFFICIAL_128 = dict(CONFIGS["paper"], coordinate_grid="linspace", upsample="fir")
CONFIGS.update({
    "celebA_128": _OFFICIAL_128,
    "stanfordcar_128": _OFFICIAL_128,
    "afhqcat_128": _OFFICIAL_128,
    "celebA_512": dict(_OFFICIAL_128, upsample_channels=(128, 64)),
})  # fmt: skip
COORDINATE_GRIDS = ("pixel_centres", "linspace")
# Why `tiny` departs from the paper in two places (both are config values; `paper` keeps 3x3 convs and
# texture-modulated layers everywhere): the texture-swap loss (eq. 4) is what stops the texture code
# from moving parts around, and it needs the ImageNet LPIPS, which this project's CPU machines cannot
# download. With a random-trunk LPIPS the small model learned to draw its layout from the texture
# code and let the correspondence map collapse (see the README). So in `tiny`:
# - kernel_size=1: the styled convs at the coordinate resolution are per-pixel (1x1), so a pixel's
#   features depend only on its own warped coordinate and the codes: the image layout can come from
#   nothing but the correspondence map, as eq. (2) intends.
# - template_layers=3: the first three styled convs take a learned constant style instead of w_t:
#   they draw a canonical template of parts that no texture code can move; the later layers and
#   every ToRGB take w_t and colour it.


@dataclass
class GeneratorOutput:
    image: torch.Tensor  # (B, 3, H, W) in about [-1, 1]
    correspondence_map: torch.Tensor  # (B, 2, h, w) warped canonical coordinates in [-1, 1]
    structure_code: torch.Tensor  # (B, w_dim) w_s
    texture_code: torch.Tensor  # (B, num_ws, w_dim) w_t per layer (W+)


class CoordinateWarpingNetwork(nn.Module):
    """Eq. (3): C^{w_s}(i, j) = P([C(i, j), w_s]), a 3-layer 1x1 MLP with ReLU and a final tanh.

    The first layer's product with the concatenation [C(i, j), w_s] is split into W_c C(i, j) +
    W_w w_s, so w_s is projected once per image instead of once per pixel (the same function).
    """

    def __init__(self, w_dim: int, hidden: int):
        super().__init__()
        self.coord_in = nn.Linear(2, hidden)
        self.code_in = nn.Linear(w_dim, hidden, bias=False)
        self.hidden = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 2)
        # Initialise the split layer as the one layer on the (2 + w_dim)-vector it stands for
        # (uniform in +-1/sqrt(fan_in), fan_in = 2 + w_dim): at the start the structure code,
        # not the coordinate, dominates, so every w_s begins with its own warp.
        bound = 1 / math.sqrt(2 + w_dim)
        for p in (self.coord_in.weight, self.coord_in.bias, self.code_in.weight):
            nn.init.uniform_(p, -bound, bound)

    def forward(self, grid: torch.Tensor, structure_code: torch.Tensor) -> torch.Tensor:
        b = structure_code.shape[0]
        points = grid.flatten(1).t()  # (P, 2) canonical coordinates
        h = self.coord_in(points)[None] + self.code_in(structure_code)[:, None]  # (B, P, hidden)
        h = self.out(F.relu(self.hidden(F.relu(h))))
        return torch.tanh(h).transpose(1, 2).reshape(b, 2, *grid.shape[1:])  # (B, 2, h, w)


class FourierEncoding(nn.Module):
    """Positional encoding of the correspondence map: 1x1 conv then sin (section 3.3)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(2, channels, 1)
        bound = math.sqrt(9 / 2)  # uniform in +-sqrt(9 / fan_in), fan_in = 2
        nn.init.uniform_(self.conv.weight, -bound, bound)
        nn.init.uniform_(self.conv.bias, -math.pi, math.pi)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.conv(coords))


class CoordGANGenerator(ModelMixin, ConfigMixin):
    """The whole generator G(z_s, z_t): mapping networks, warping network and modulated synthesis.

    Layers at the coordinate resolution: one styled conv, then `num_pairs` pairs, each followed
    by a ToRGB; every conv's output and every ToRGB's input carry the correspondence map (2 extra
    channels). `upsample_channels` adds 2x stages (pair + ToRGB, no map) for larger images.
    W+ layout (StyleGAN2's): conv0 w[0], rgb0 w[1], pair k: w[2k+1], w[2k+2], its rgb w[2k+3].
    `kernel_size` is that of the styled convs at the coordinate resolution (3 in the paper);
    the first `template_layers` of those convs take a learned constant style instead of their
    W+ entry (0 in the paper; see the `tiny` config's note). `coordinate_grid`: the canonical
    frame's pixel centres ("pixel_centres", see `canonical_grid`) or the authors' linspace(-1, 1)
    ("linspace"). `upsample`: "bilinear" resize or StyleGAN2's "fir" (transposed conv + FIR filter).
    """

    @register_to_config
    def __init__(
        self,
        coordinate_resolution: int = 32,
        channels: int = 64,
        num_pairs: int = 2,
        upsample_channels: tuple = (32,),
        z_dim: int = 64,
        w_dim: int = 64,
        mapping_layers: int = 4,
        mapping_lr_mul: float = 0.01,
        warp_hidden: int = 64,
        kernel_size: int = 3,
        template_layers: int = 0,
        coordinate_grid: str = "pixel_centres",
        upsample: str = "bilinear",
    ):
        super().__init__()
        if coordinate_grid not in COORDINATE_GRIDS:
            raise ValueError(f"coordinate_grid must be one of {COORDINATE_GRIDS}, got {coordinate_grid!r}")
        if upsample not in ("bilinear", "fir"):
            raise ValueError(f"upsample must be 'bilinear' or 'fir', got {upsample!r}")
        if kernel_size not in (1, 3):
            raise ValueError(f"kernel_size must be 1 or 3, got {kernel_size}")
        if not 0 <= template_layers <= 1 + 2 * num_pairs:
            raise ValueError(f"template_layers must be in [0, {1 + 2 * num_pairs}] (the styled convs at the "
                             f"coordinate resolution), got {template_layers}")
        if coordinate_resolution < 4:
            raise ValueError(f"coordinate_resolution must be at least 4, got {coordinate_resolution}")
        if num_pairs < 0:
            raise ValueError(f"num_pairs must be non-negative, got {num_pairs}")
        self.structure_mapping = mapping_network(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.texture_mapping = mapping_network(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.warping = CoordinateWarpingNetwork(w_dim, warp_hidden)
        self.fourier = FourierEncoding(channels)
        c = channels
        k = kernel_size
        self.convs = nn.ModuleList([StyledConv(c, c, w_dim, kernel_size=k)])
        self.to_rgbs = nn.ModuleList([ToRGB(c + 2, w_dim)])
        for _ in range(num_pairs):
            self.convs.extend([StyledConv(c + 2, c, w_dim, kernel_size=k), StyledConv(c + 2, c, w_dim, kernel_size=k)])
            self.to_rgbs.append(ToRGB(c + 2, w_dim))
        # The template layers' styles (w space), shared by every image; absent when template_layers=0.
        self.template_code = nn.Parameter(torch.zeros(template_layers, w_dim)) if template_layers else None
        self.up_convs = nn.ModuleList()
        self.up_rgbs = nn.ModuleList()
        in_c = c + 2
        for out_c in upsample_channels:
            self.up_convs.extend([StyledConv(in_c, out_c, w_dim, upsample=upsample), StyledConv(out_c, out_c, w_dim)])
            self.up_rgbs.append(ToRGB(out_c, w_dim, upsample=upsample))
            in_c = out_c
        r = coordinate_resolution
        # the authors' frame: x along the width, y along the height, both linspace(-1, 1)
        if coordinate_grid == "linspace":
            line = torch.linspace(-1, 1, r)
            grid = torch.stack([line[None].expand(r, r), line[:, None].expand(r, r)])
        else:
            grid = canonical_grid(r, r)
        self.register_buffer("canonical_coords", grid.contiguous())
        self.register_buffer("structure_code_mean", torch.zeros(w_dim))
        self.register_buffer("texture_code_mean", torch.zeros(w_dim))

    @property
    def num_ws(self) -> int:
        return 2 + 2 * self.config.num_pairs + 2 * len(self.config.upsample_channels)

    @property
    def resolution(self) -> int:
        return self.config.coordinate_resolution * 2 ** len(self.config.upsample_channels)

    @property
    def resolutions(self) -> list[int]:
        """The image sizes `synthesize` can stop at: the coordinate resolution, then each upsampling stage."""
        return [self.config.coordinate_resolution * 2**u for u in range(len(self.config.upsample_channels) + 1)]

    @property
    def num_styled_convs(self) -> int:
        """Noise inputs of `synthesize`, in the order they are used."""
        return len(self.convs) + len(self.up_convs)

    # ---------------------------------------------------------------- codes
    def structure_code(self, z_s: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.structure_mapping(z_s)
        return self.structure_code_mean.lerp(w, truncation) if truncation != 1 else w

    def texture_code(self, z_t: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.texture_mapping(z_t)
        return self.texture_code_mean.lerp(w, truncation) if truncation != 1 else w

    @torch.no_grad()
    def update_code_means(self, n: int = 4096, generator: torch.Generator | None = None) -> None:
        """Mean w_s and w_t over `n` random z: the centre that truncation pulls towards."""
        z = torch.randn(2, n, self.config.z_dim, generator=generator).to(self.device)
        self.structure_code_mean.copy_(self.structure_mapping(z[0]).mean(0))
        self.texture_code_mean.copy_(self.texture_mapping(z[1]).mean(0))

    def correspondence_map(self, structure_code: torch.Tensor) -> torch.Tensor:
        """C^{w_s} (B, 2, h, w): eq. (3) on the canonical grid."""
        return self.warping(self.canonical_coords.to(structure_code.dtype), structure_code)

    # ---------------------------------------------------------------- synthesis
    def synthesize(
        self,
        correspondence_map: torch.Tensor,
        texture_code: torch.Tensor,
        randomize_noise: bool = True,
        noise: list | None = None,
        resolution: int | None = None,
    ) -> torch.Tensor:
        """A(C^{w_s}, w_t) of eq. (2). texture_code (B, w_dim) or W+ (B, num_ws, w_dim).

        noise: one (B, 1, H, W) tensor per styled conv (`num_styled_convs`, in order) instead of
        fresh draws. resolution: stop after the stage that reaches it (one of `resolutions`;
        default the full `resolution`); a W+ code then needs only the entries those layers use.
        The convolutions are local, so any crop of a correspondence map (with the same crop of
        the noise) gives the same crop of the image, away from the crop's inner edges.
        """
        resolution = resolution or self.resolution
        if resolution not in self.resolutions:
            raise ValueError(f"resolution must be one of {self.resolutions}, got {resolution}")
        stages = self.resolutions.index(resolution)
        needed = 2 + 2 * self.config.num_pairs + 2 * stages
        if texture_code.dim() == 2:
            texture_code = texture_code[:, None].expand(-1, needed, -1)
        entries = texture_code.shape[1]
        if not needed <= entries <= self.num_ws or (stages == len(self.up_rgbs) and entries != self.num_ws):
            at = f" ({needed} at {resolution} px)" if needed < self.num_ws else ""
            raise ValueError(f"a W+ texture code needs {self.num_ws} entries" + at
                             + f", got {texture_code.shape[1]}")
        if noise is not None and len(noise) != self.num_styled_convs:
            raise ValueError(f"noise must hold {self.num_styled_convs} tensors (one per styled conv), got {len(noise)}")
        noise = list(noise) if noise is not None else [None] * self.num_styled_convs
        cmap = correspondence_map
        w = list(texture_code.unbind(1))
        if self.template_code is not None:  # conv i (i < template_layers) reads W+ entry conv_entry[i]
            conv_entry = [0] + [2 * k + 1 + j for k in range(self.config.num_pairs) for j in range(2)]
            for i, code in enumerate(self.template_code.to(texture_code.dtype)):
                w[conv_entry[i]] = code[None].expand(texture_code.shape[0], -1)
        x = self.convs[0](self.fourier(cmap), w[0], randomize_noise, noise[0])
        x = torch.cat([x, cmap], 1)
        rgb = self.to_rgbs[0](x, w[1])
        for k in range(self.config.num_pairs):
            for j in range(2):
                i = 1 + 2 * k + j
                x = torch.cat([self.convs[i](x, w[2 * k + 1 + j], randomize_noise, noise[i]), cmap], 1)
            rgb = self.to_rgbs[k + 1](x, w[2 * k + 3], rgb)
        for u, to_rgb in enumerate(self.up_rgbs[:stages]):
            k = self.config.num_pairs + u  # stages continue the W+ layout of the pairs
            i = len(self.convs) + 2 * u
            x = self.up_convs[2 * u](x, w[2 * k + 1], randomize_noise, noise[i])
            x = self.up_convs[2 * u + 1](x, w[2 * k + 2], randomize_noise, noise[i + 1])
            rgb = to_rgb(x, w[2 * k + 3], rgb)
        return rgb

    def forward(
        self,
        z_s: torch.Tensor | None = None,
        z_t: torch.Tensor | None = None,
        structure_code: torch.Tensor | None = None,
        texture_code: torch.Tensor | None = None,
        truncation: float = 1.0,
        randomize_noise: bool = True,
        noise: list | None = None,
        resolution: int | None = None,
    ) -> GeneratorOutput:
        """Image and correspondence map from latents z (through the mapping networks) or codes w.
        noise and resolution as in `synthesize`."""
        if (z_s is None) == (structure_code is None) or (z_t is None) == (texture_code is None):
            raise ValueError("give exactly one of z_s / structure_code and one of z_t / texture_code")
        w_s = self.structure_code(z_s, truncation) if structure_code is None else structure_code
        w_t = self.texture_code(z_t, truncation) if texture_code is None else texture_code
        cmap = self.correspondence_map(w_s)
        image = self.synthesize(cmap, w_t, randomize_noise, noise, resolution)
        if w_t.dim() == 2:
            w_t = w_t[:, None].expand(-1, self.num_ws, -1)
        return GeneratorOutput(image, cmap, w_s, w_t)
