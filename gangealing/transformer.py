"""The congealing spatial transformer T (section 3.3 of the paper) and the cluster classifier.

T = flow STN o similarity STN, both regressed from an anti-aliased 128 px copy of the input and
both starting at the identity (zero-initialised output layers). The similarity STN may be
re-applied to its own output (`iters`); its matrices compose. The flow STN predicts a residual
flow at flow_size/8 and upsamples it 8x by convex combination (RAFT-style). The source image
is sampled once, through the composed grid grid = A_sim (identity + residual flow), with an
anti-aliased mipmap warp.

The `paper` configs reproduce the authors' released `t_ema` (K = 1 and K = 4) and `classifier`
layer for layer, with the same state_dict key names (`stns.0.*` similarity, `stns.1.*` flow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from .layers import BilinearDownsample, ConvLayer, EqualConv2d, EqualLinear, ResBlock, make_kernel, stylegan_channels

TRANSFORMER_CONFIGS = {
    # the authors' released model; test-time settings differ per category (see convert_official)
    "paper": dict(flow_size=128, input_size=256, channel_multiplier=0.5, num_heads=1),
    "paper-k4": dict(flow_size=128, input_size=256, channel_multiplier=0.5, num_heads=4),
    "tiny": dict(flow_size=64, input_size=64, channel_multiplier=0.5, max_channels=128, num_heads=1),
    "micro": dict(flow_size=32, input_size=32, channel_multiplier=0.25, max_channels=32, num_heads=1),
}


# ------------------------------------------------------------------ grids and sampling


def identity_grid(size: int, batch: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, size, size, 2) identity sampling grid, (x, y) in [-1, 1], align_corners=False."""
    eye = torch.eye(2, 3, device=device, dtype=dtype)[None].expand(batch, -1, -1)
    return F.affine_grid(eye, [batch, 1, size, size], align_corners=False)


def apply_affine(matrix: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """matrix (B, 2, 3) applied to every (x, y) of grid (B, H, W, 2)."""
    b, h, w, _ = grid.shape
    out = torch.baddbmm(matrix[:, None, :, 2], grid.reshape(b, h * w, 2), matrix[:, :, :2].transpose(1, 2))
    return out.view(b, h, w, 2)


def to_3x3(matrix: torch.Tensor) -> torch.Tensor:
    row = matrix.new_tensor([0.0, 0.0, 1.0]).expand(matrix.shape[0], 1, 3)
    return torch.cat([matrix, row], 1)


def total_variation(flow: torch.Tensor) -> torch.Tensor:
    """Huber (delta 1) total variation of a flow (B, H, W, 2), per sample (B,): the mean over the
    vertical differences plus the mean over the horizontal ones (the TV term of eq. 5)."""
    dy = flow[:, 1:] - flow[:, :-1]
    dx = flow[:, :, 1:] - flow[:, :, :-1]
    huber = lambda d: F.huber_loss(d, torch.zeros_like(d), reduction="none", delta=1.0).flatten(1).mean(1)  # noqa: E731
    return huber(dy) + huber(dx)


class MipmapWarp(nn.Module):
    """Anti-aliased grid sampling. Each output pixel reads from the mip level log2(its footprint in
    source pixels), blending the two nearest levels; level i is the input blurred and halved i
    times, then bilinearly enlarged back to the input size."""

    def __init__(self, max_levels: float = 3.5):
        super().__init__()
        self.register_buffer("blur_filter", make_kernel()[None, None])  # (1, 1, 4, 4)
        self.max_levels = max_levels

    def levels(self, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, h, w) mip level of every output pixel of grid (B, h, w, 2)."""
        scale = grid.new_tensor([(width - 1) / 2, (height - 1) / 2])
        px = (grid + 1) * scale  # source pixel coordinates
        padded = F.pad(px.permute(0, 3, 1, 2), [1, 1, 1, 1], mode="replicate").permute(0, 2, 3, 1)
        centre = padded[:, 1:-1, 1:-1]
        neighbours = [padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]]
        footprint = torch.stack([(n - centre).norm(dim=-1) for n in neighbours]).amax(0)
        return footprint.clamp(min=1).log2().clamp(0, self.max_levels - 1)

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = F.pad(x.reshape(b * c, 1, h, w), [1, 1, 1, 1], mode="reflect")
        return F.conv2d(x, self.blur_filter.to(x.dtype), stride=2).view(b, c, h // 2, w // 2)

    def forward(self, x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
        """x (B, C, H, W), grid (B, h, w, 2) -> (B, C, h, w)."""
        b, c, h, w = x.shape
        size = 2 ** math.ceil(math.log2(max(h, w)))
        if (h, w) != (size, size):  # the pyramid needs a power of two: reflect-pad, keep the grid's frame
            x = F.pad(x, [0, size - w, 0, size - h], mode="reflect")
            grid = (grid + 1) * grid.new_tensor([w / size, h / size]) - 1
        level = self.levels(grid, size, size)  # (B, h', w')
        num = int(math.ceil(level.max().item())) + 1
        samples, current = [], x
        for i in range(num):
            if i > 0:
                current = self.downsample(current)
                source = F.interpolate(current, scale_factor=2**i, mode="bilinear", align_corners=False)
            else:
                source = x
            samples.append(F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False))
        if num == 1:
            return samples[0]
        stack = torch.stack(samples, 1)  # (B, L, C, h', w')
        low = level.floor().long().clamp(max=num - 1)
        high = level.ceil().long().clamp(max=num - 1)
        frac = (level - low.to(level.dtype))[:, None].to(x.dtype)  # (B, 1, h', w')
        pick = lambda idx: stack.gather(1, idx[:, None, None].expand(-1, 1, c, -1, -1))[:, 0]  # noqa: E731
        return torch.lerp(pick(low), pick(high), frac)


# ------------------------------------------------------------------ regressors


def _trunk(flow_size: int, channel_multiplier: float, max_channels: int, end_size: int, extra_block: bool):
    """1x1 stem, then residual blocks halving the resolution from flow_size to end_size."""
    ch = lambda r: stylegan_channels(r, channel_multiplier, max_channels)  # noqa: E731
    convs = [ConvLayer(3, ch(flow_size), 1)]
    r = flow_size
    while r > end_size:
        convs.append(ResBlock(ch(r), ch(r // 2)))
        r //= 2
    if extra_block:
        convs.append(ResBlock(ch(r), ch(r), downsample=False))
    return nn.Sequential(*convs), ch(r)


class SimilarityHead(nn.Module):
    """Linear layer -> (rotation, log-scale, tx, ty) per cluster head; zero init = identity.
    Output column p * K + k for parameter p of head k."""

    def __init__(self, in_features: int, num_heads: int):
        super().__init__()
        self.register_buffer("one_hot", torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 1, 3))
        self.linear = nn.Linear(in_features, 4 * num_heads)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.warper = MipmapWarp()
        self.num_heads = num_heads

    def forward(self, features: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
        """features (B, F) -> similarity matrices (B, 2, 3)."""
        params = self.linear(features).view(-1, 4, self.num_heads)  # (B, 4, K)
        params = params[:, :, 0] if heads is None else params.gather(2, heads.view(-1, 1, 1).expand(-1, 4, 1))[:, :, 0]
        angle = torch.tanh(params[:, 0]) * math.pi
        scale = torch.exp(params[:, 1])
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        return torch.stack([torch.stack([cos, -sin, params[:, 2]], 1), torch.stack([sin, cos, params[:, 3]], 1)], 1)


class FlowHead(nn.Module):
    """Residual flow at the trunk's resolution + RAFT convex-upsampling masks (x8); zero init."""

    def __init__(self, channels: int, num_heads: int, upsample: int = 8):
        super().__init__()
        conv = lambda cin, cout: EqualConv2d(cin, cout, 3, padding=1)  # noqa: E731
        self.flow_out = nn.Sequential(conv(channels, channels), nn.ReLU(), conv(channels, 2 * num_heads))
        self.mask_out = nn.Sequential(conv(channels, channels), nn.ReLU(), conv(channels, 9 * upsample**2 * num_heads))
        with torch.no_grad():
            self.flow_out[2].weight.zero_()
        self.warper = MipmapWarp()
        self.num_heads, self.upsample = num_heads, upsample

    def forward(self, features: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
        """features (B, C, h, w) -> residual flow (B, 8h, 8w, 2)."""
        b, _, h, w = features.shape
        k, u = self.num_heads, self.upsample
        flow = self.flow_out(features).view(b, k, 2, h, w)
        mask = self.mask_out(features).view(b, k, 9 * u * u, h, w)
        idx = torch.zeros(b, dtype=torch.long, device=features.device) if heads is None else heads
        flow = flow[torch.arange(b, device=idx.device), idx]  # (B, 2, h, w)
        mask = mask[torch.arange(b, device=idx.device), idx]  # (B, 9 u u, h, w)
        return convex_upsample(flow, mask, u).permute(0, 2, 3, 1)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """RAFT convex upsampling: each fine pixel is a softmax-weighted mix of the 3x3 coarse
    neighbours of factor * flow. flow (B, 2, h, w), mask (B, 9 f f, h, w) -> (B, 2, f h, f w)."""
    b, _, h, w = flow.shape
    weights = torch.softmax(mask.view(b, 1, 9, factor, factor, h, w), dim=2)
    neighbours = F.unfold(factor * flow, [3, 3], padding=1).view(b, 2, 9, 1, 1, h, w)
    up = (weights * neighbours).sum(2)  # (B, 2, f, f, h, w)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, factor * h, factor * w)


class _Regressor(nn.Module):
    """Input downsample (when input_size > flow_size) + trunk + final conv."""

    def __init__(self, flow_size, input_size, channel_multiplier, max_channels, end_size, extra_block):
        super().__init__()
        if input_size not in (flow_size, 2 * flow_size):
            raise ValueError(f"input_size must be flow_size or 2 * flow_size, got {input_size} and {flow_size}")
        if input_size > flow_size:
            self.input_downsample = BilinearDownsample(3)
        self.convs, channels = _trunk(flow_size, channel_multiplier, max_channels, end_size, extra_block)
        self.final_conv = ConvLayer(channels, channels, 3)
        self.channels, self.flow_size = channels, flow_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > self.flow_size:
            x = self.input_downsample(x)
        return self.final_conv(self.convs(x))


def similarity_grid(matrix: torch.Tensor | None, new: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The iteration's composed similarity (B, 2, 3) (`new` after `matrix`, or `new` alone) and its
    sampling grid (B, size, size, 2): coordinates, which a precision policy keeps in fp32."""
    matrix = new if matrix is None else torch.bmm(to_3x3(matrix), to_3x3(new))[:, :2]
    return matrix, F.affine_grid(matrix, [matrix.shape[0], 3, size, size], align_corners=False)


class SimilarityTransformer(_Regressor):
    def __init__(self, flow_size, input_size, channel_multiplier, max_channels, num_heads):
        super().__init__(flow_size, input_size, channel_multiplier, max_channels, end_size=4, extra_block=False)
        self.final_linear = EqualLinear(self.channels * 16, self.channels, activation=True)
        self.warp_head = SimilarityHead(self.channels, num_heads)

    def forward(self, x, heads=None, iters=1, padding_mode="border"):
        """x (B, 3, S, S) -> list of (congealed (B, 3, F, F), composed matrix (B, 2, 3)) per iteration."""
        f = self.flow_size
        image, matrix, out = x, None, []
        for _ in range(iters):
            new = self.warp_head(self.final_linear(self.features(image).flatten(1)), heads)  # (B, 2, 3)
            matrix, grid = similarity_grid(matrix, new, f)
            image = self.warp_head.warper(x, grid, padding_mode)  # always resample the original input
            out.append((image, matrix))
        return out


class FlowTransformer(_Regressor):
    def __init__(self, flow_size, input_size, channel_multiplier, max_channels, num_heads):
        super().__init__(flow_size, input_size, channel_multiplier, max_channels, end_size=flow_size // 8,
                         extra_block=True)
        self.warp_head = FlowHead(self.channels, num_heads)

    def forward(self, x, heads=None):  # (B, 3, F, F) -> residual flow (B, F, F, 2)
        return self.warp_head(self.features(x), heads)


@dataclass
class TransformerOutput:
    congealed: torch.Tensor  # (B, 3, R, R) aligned images
    grid: torch.Tensor  # (B, R, R, 2) sampling grid into the input, (x, y) in [-1, 1]
    residual_flow: torch.Tensor  # (B, F, F, 2) the flow STN's residual, at flow_size
    similarity: torch.Tensor  # (B, 2, 3) composed similarity matrix
    grid_flow_size: torch.Tensor  # (B, F, F, 2) the grid at flow_size (for mapping points)


class SpatialTransformer(ModelMixin, ConfigMixin):
    """T: similarity STN composed with a flow STN, K cluster heads (section 3.3, eq. 5's T).

    Test-time settings from the authors' release live in the config: `padding_mode`,
    `similarity_iters`, and `flip` ("tv": keep the mirror with the lower flow total variation,
    for K = 1; "classifier": a ClusterClassifier decides, for K > 1; "none").
    """

    @register_to_config
    def __init__(self, flow_size: int = 128, input_size: int = 256, channel_multiplier: float = 0.5,
                 max_channels: int = 512, num_heads: int = 1, padding_mode: str = "border",
                 similarity_iters: int = 1, flip: str = "tv"):
        super().__init__()
        if flow_size < 32 or flow_size & (flow_size - 1):
            raise ValueError(f"flow_size must be a power of two >= 32, got {flow_size}")
        if padding_mode not in ("border", "reflection", "zeros"):
            raise ValueError(f"padding_mode must be border, reflection or zeros, got {padding_mode!r}")
        if flip not in ("tv", "classifier", "none"):
            raise ValueError(f"flip must be 'tv', 'classifier' or 'none', got {flip!r}")
        args = (flow_size, input_size, channel_multiplier, max_channels, num_heads)
        self.stns = nn.ModuleList([SimilarityTransformer(*args), FlowTransformer(*args)])

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None, output_resolution: int | None = None,
                iters: int | None = None, padding_mode: str | None = None,
                similarity_only: bool = False) -> TransformerOutput:
        """x (B, 3, S, S) with S = input_size; heads (B,) cluster head per sample (K > 1)."""
        if x.shape[-1] != self.config.input_size or x.shape[-2] != self.config.input_size:
            raise ValueError(f"the transformer takes {self.config.input_size} px inputs, got {tuple(x.shape[-2:])}; "
                             "resize first")
        iters = iters or self.config.similarity_iters
        padding_mode = padding_mode or self.config.padding_mode
        f = self.config.flow_size
        sim_image, matrix = self.stns[0](x, heads, iters, padding_mode)[-1]
        b = x.shape[0]
        identity = identity_grid(f, 1, x.device, x.dtype)
        if similarity_only:
            flow = torch.zeros(b, f, f, 2, device=x.device, dtype=x.dtype)
        else:
            flow = self.stns[1](sim_image, heads)  # (B, F, F, 2)
        grid_f = apply_affine(matrix, identity + flow)  # (B, F, F, 2)
        grid = grid_f
        if output_resolution is not None and output_resolution != f:
            grid = F.interpolate(grid_f.permute(0, 3, 1, 2), scale_factor=output_resolution / f, mode="bilinear",
                                 align_corners=False).permute(0, 2, 3, 1)
        congealed = self.stns[1].warp_head.warper(x, grid, padding_mode)
        return TransformerOutput(congealed, grid, flow, matrix, grid_f)

    def similarity_intermediates(self, x, heads=None, iters=None, padding_mode=None):
        """[(image (B, 3, F, F), composed matrix (B, 2, 3))] after each similarity iteration."""
        return self.stns[0](x, heads, iters or self.config.similarity_iters, padding_mode or self.config.padding_mode)

    def choose_flips(self, x: torch.Tensor, **kwargs) -> tuple[torch.Tensor, TransformerOutput]:
        """Congeal x and its mirror in one batch and keep, per image, the orientation whose residual
        flow has the lower total variation (ties: not mirrored). -> ((B,) bool: mirrored, the kept
        outputs)."""
        b = x.shape[0]
        out = self(torch.cat([x, x.flip(3)]), **kwargs)
        flipped = total_variation(out.residual_flow).view(2, b).argmin(0) == 1
        pick = lambda v: torch.where(flipped.view(-1, *[1] * (v.ndim - 1)), v[b:], v[:b])  # noqa: E731
        return flipped, TransformerOutput(*[pick(v) for v in vars(out).values()])

    def points_to_input(self, grid_flow_size: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Congealed points (B, P, 2), normalised [-1, 1] -> normalised input coordinates (B, P, 2),
        by bilinear lookup in the grid (border padding)."""
        out = F.grid_sample(grid_flow_size.permute(0, 3, 1, 2), points[:, :, None], mode="bilinear",
                            padding_mode="border", align_corners=False)
        return out[..., 0].permute(0, 2, 1)


def pixels_to_normalized(points: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates (0..size-1, pixel centres) -> [-1, 1] (align_corners=False)."""
    return (2 * points + 1) / size - 1


def normalized_to_pixels(points: torch.Tensor, size: int) -> torch.Tensor:
    return ((points + 1) * size - 1) / 2


class ClusterClassifier(ModelMixin, ConfigMixin):
    """Predicts, for a real image, which of the K clusters (and whether its mirror) congeals it
    best: 2K logits, index k = cluster k, K + k = cluster k mirrored (section 3.4)."""

    @register_to_config
    def __init__(self, flow_size: int = 128, input_size: int = 256, channel_multiplier: float = 0.5,
                 max_channels: int = 512, num_clusters: int = 4):
        super().__init__()
        reg = _Regressor(flow_size, input_size, channel_multiplier, max_channels, end_size=4, extra_block=False)
        if input_size > flow_size:
            self.input_downsample = reg.input_downsample
        self.convs, self.final_conv = reg.convs, reg.final_conv
        self.to_logits = EqualLinear(reg.channels * 16, 2 * num_clusters, activation=True)
        self.flow_size = flow_size

    def forward(self, x):  # (B, 3, S, S) -> (B, 2K)
        if x.shape[-1] > self.flow_size:
            x = self.input_downsample(x)
        return self.to_logits(self.final_conv(self.convs(x)).flatten(1))

    def flips_per_cluster(self, x) -> torch.Tensor:
        """(B, K) bool: for each cluster, whether the mirrored image scores higher."""
        b, k = x.shape[0], self.config.num_clusters
        return self(x).view(b, 2, k).argmax(1) == 1

    def assign(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(cluster (B,) long, flip (B,) bool) from the argmax over the 2K logits."""
        cls = self(x).argmax(1)
        return cls % self.config.num_clusters, cls >= self.config.num_clusters
