"""CoCosNet networks (Zhang et al., CVPR 2020), read top to bottom:

* `CoCosNetCorrespondence` (section 3.1): domain adaptors F_{A->S} (input map) and F_{B->S}
  (exemplar photo) into a shared domain S with channel-wise normalisation, the shared layer T,
  the centred cosine correlation (eq. 3) and the softmax warp (eq. 4) as attention.
* `CoCosNetGenerator` (section 3.2): SPADE blocks with positional normalisation (eq. 5, 6, 7),
  conditioned on the warped exemplar and the input map.
* `CoCosNetDiscriminator`: multi-scale spectral-norm PatchGAN for the hinge loss (eq. 13).

The `ade20k`, `celebahq`, `celebahqedge` and `deepfashion` configs reproduce the authors' released
networks layer for layer; their state-dict key names are the authors' own (so a released checkpoint
loads name by name, see convert_official.py). `tiny` and `micro` are narrow versions for a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .correspondence import correlation_features, normalize_features, soft_warp
from .layers import SNConv2d, SPADEResnetBlock, SelfAttention, CorrespondenceResidualBlock, _version, conv
from .precision import fp32_policy_state

INPUT_KINDS = ("mask", "edge", "channels")
WARP_MODES = ("nearest", "bilinear", "patch")

# Shared settings of the authors' four released models (../shared/fixtures/cocosnet-official).
_PAPER = dict(resolution=256, adaptor_channels=(64, 128, 256, 512, 512), feature_channels=256, spade_hidden=128,
              correlation_channels=256, match_kernel=3, num_residual=4, ngf=64, generator_attention=True,
              ndf=64, discriminator_layers=4, num_discriminators=2, discriminator_attention=True)
CONFIGS = {
    # label masks, 150 classes + "don't care" = 151 one-hot channels; nearest x4 upsampling of the warp
    "ade20k": dict(_PAPER, input_kind="mask", input_channels=151, adaptor_kernel=3, maskmix=True, warp_mask=True,
                   warp_mode="nearest"),
    # face-part masks, 19 one-hot channels (channel 16 = glasses)
    "celebahq": dict(_PAPER, input_kind="mask", input_channels=19, adaptor_kernel=4, maskmix=True, warp_mask=True,
                     warp_mode="bilinear"),
    # 15 channels: all edges, 13 part-boundary distance maps, part edges
    "celebahqedge": dict(_PAPER, input_kind="channels", input_channels=15, adaptor_kernel=4, maskmix=True,
                         warp_mask=False, warp_mode="bilinear"),
    # 20 channels: RGB skeleton rendering + 17 limb distance maps; the exemplar is warped as 4x4 patches
    "deepfashion": dict(_PAPER, input_kind="channels", input_channels=20, adaptor_kernel=4, maskmix=False,
                        warp_mask=False, warp_mode="patch"),
    # CPU configs for synthetic data; input_kind / input_channels are set from the data
    "tiny": dict(resolution=64, adaptor_channels=(16, 32, 64, 64, 64), feature_channels=64, spade_hidden=32,
                 correlation_channels=64, match_kernel=3, num_residual=2, ngf=8, generator_attention=False,
                 ndf=16, discriminator_layers=3, num_discriminators=2, discriminator_attention=False,
                 input_kind="mask", input_channels=12, adaptor_kernel=4, maskmix=False, warp_mask=False,
                 warp_mode="bilinear"),
    "micro": dict(resolution=64, adaptor_channels=(4, 8, 8, 8, 8), feature_channels=8, spade_hidden=8,
                  correlation_channels=8, match_kernel=3, num_residual=1, ngf=2, generator_attention=True,
                  ndf=4, discriminator_layers=2, num_discriminators=2, discriminator_attention=True,
                  input_kind="mask", input_channels=12, adaptor_kernel=4, maskmix=False, warp_mask=False,
                  warp_mode="bilinear"),
}
CONFIGS["paper"] = dict(CONFIGS["celebahq"])  # the paper's face setting; input channels follow the data


def network_configs(config: dict | str, **overrides) -> tuple[dict, dict, dict]:
    """Split one CONFIGS entry (a name or a dict; `overrides` replace its entries, e.g. input_channels,
    input_kind, resolution, class_names) into the constructor arguments of the three networks."""
    c = dict(CONFIGS[config] if isinstance(config, str) else config, **overrides)
    corr = dict(input_kind=c["input_kind"], input_channels=c["input_channels"], resolution=c["resolution"],
                adaptor_channels=tuple(c["adaptor_channels"]), adaptor_kernel=c["adaptor_kernel"],
                feature_channels=c["feature_channels"], spade_hidden=c["spade_hidden"], maskmix=c["maskmix"],
                num_residual=c["num_residual"], correlation_channels=c["correlation_channels"],
                match_kernel=c["match_kernel"], warp_mode=c["warp_mode"], warp_mask=c["warp_mask"],
                class_names=tuple(c["class_names"]) if c.get("class_names") else None)
    gen = dict(condition_channels=3 + c["input_channels"], resolution=c["resolution"], ngf=c["ngf"],
               spade_hidden=c["spade_hidden"], attention=c["generator_attention"])
    disc = dict(input_channels=3 + c["input_channels"], segmentation_channels=c["input_channels"], ndf=c["ndf"],
                num_layers=c["discriminator_layers"], num_discriminators=c["num_discriminators"],
                attention=c["discriminator_attention"])
    return corr, gen, disc


# ------------------------------------------------------------------ correspondence network


class DomainAdaptor(nn.Module):
    """F_{X->S}: five spectral-norm convs with instance norm (two of stride 2: R -> R/4), then three
    SPADE residual blocks conditioned on the adaptor's own input, ending at `feature_channels`."""

    def __init__(self, in_channels: int, channels: tuple, kernel: int, feature_channels: int, spade_hidden: int):
        super().__init__()
        strides_kernels = [(1, 3), (2, kernel), (1, 3), (2, kernel), (1, 3)]
        cin = in_channels
        for i, (cout, (stride, k)) in enumerate(zip(channels, strides_kernels), start=1):
            block = nn.Sequential(conv(cin, cout, k, stride=stride, padding=1, bias=False, spectral=True),
                                  nn.InstanceNorm2d(cout, affine=False))
            setattr(self, f"layer{i}", block)
            cin = cout
        width = channels[-1]
        self.head_0 = SPADEResnetBlock(width, width, in_channels, spade_hidden)
        self.G_middle_0 = SPADEResnetBlock(width, width, in_channels, spade_hidden)
        self.G_middle_1 = SPADEResnetBlock(width, feature_channels, in_channels, spade_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        condition = x
        h = self.layer1(x)
        for layer in (self.layer2, self.layer3, self.layer4, self.layer5):
            h = layer(F.leaky_relu(h, 0.2))  # (B, C_i, R / s, R / s)
        h = self.head_0(h, condition)
        h = self.G_middle_0(h, condition)
        return self.G_middle_1(h, condition)  # (B, feature_channels, R/4, R/4)


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


@dataclass
class CorrespondenceOutput:
    warped_exemplar: torch.Tensor  # (B, 3, R, R) r_{y->x} at the image size
    warped_exemplar_lowres: torch.Tensor | None  # (B, 3, R/4, R/4) before upsampling (None for patch warps)
    warp_mask: torch.Tensor | None  # (B, C_in, R/4, R/4) the exemplar's map warped (mask inputs)
    input_features: torch.Tensor  # (B, F, R/4, R/4) x_S: adaptor output, channel-normalised
    exemplar_features: torch.Tensor  # (B, F, R/4, R/4) y_S
    query: torch.Tensor  # (B, HW, D) correlation vectors of the input (eq. 3)
    key: torch.Tensor  # (B, HW, D) correlation vectors of the exemplar


class CoCosNetCorrespondence(ModelMixin, ConfigMixin):
    """Cross-domain correspondence network (section 3.1).

    input map x_A (B, C_in, R, R) and exemplar y_B (B, 3, R, R) in [-1, 1]:
    x_S = F_{A->S}(x_A), y_S = F_{B->S}(y_B), channel-normalised; with `maskmix` the input map and
    the exemplar's own map (R/4, nearest) are appended; the shared residual layer T, then 1x1
    projections theta / phi; M(u, v) (eq. 3) on 3x3 patches; r_{y->x} by eq. (4) with alpha = 100.
    """

    @register_to_config
    def __init__(self, input_kind: str = "mask", input_channels: int = 19, resolution: int = 256,
                 adaptor_channels: tuple = (64, 128, 256, 512, 512), adaptor_kernel: int = 4,
                 feature_channels: int = 256, spade_hidden: int = 128, maskmix: bool = True, num_residual: int = 4,
                 correlation_channels: int = 256, match_kernel: int = 3, warp_mode: str = "bilinear",
                 warp_mask: bool = True, alpha: float = 100.0, downsample: int = 4, class_names: tuple | None = None):
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
        if warp_mode not in WARP_MODES:
            raise ValueError(f"warp_mode must be one of {WARP_MODES}, got {warp_mode!r}")
        if resolution % (downsample * 8):
            raise ValueError(f"resolution must be a multiple of {downsample * 8}, got {resolution}")
        if len(adaptor_channels) != 5:
            raise ValueError(f"adaptor_channels needs 5 widths, got {adaptor_channels}")
        self.adaptive_model_seg = DomainAdaptor(input_channels, tuple(adaptor_channels), adaptor_kernel,
                                                feature_channels, spade_hidden)
        self.adaptive_model_img = DomainAdaptor(3, tuple(adaptor_channels), adaptor_kernel, feature_channels,
                                                spade_hidden)
        width = feature_channels + (input_channels if maskmix else 0)
        self.layer = nn.Sequential(*[CorrespondenceResidualBlock(width) for _ in range(num_residual)])
        self.phi = nn.Conv2d(width, correlation_channels, 1)
        self.theta = nn.Conv2d(width, correlation_channels, 1)

    @property
    def feature_resolution(self) -> int:
        return self.config.resolution // self.config.downsample

    def shared_features(self, input_map: torch.Tensor, exemplar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_S, y_S (B, F, R/4, R/4): the adaptors' outputs after channel-wise normalisation."""
        x_s = normalize_features(self.adaptive_model_seg(input_map))
        y_s = normalize_features(self.adaptive_model_img(exemplar))
        return x_s, y_s

    def correlation_vectors(self, x_s, y_s, input_map=None, exemplar_map=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(query, key): (B, HW, correlation_channels * k^2) vectors whose dot product is M(u, v)."""
        return self._correlation_side(x_s, input_map, self.theta), self._correlation_side(y_s, exemplar_map, self.phi)

    def _correlation_side(self, features, own_map, projection) -> torch.Tensor:
        """One side of eq. (3): [features, own map at R/4 (maskmix)] -> T -> 1x1 projection -> unfolded vectors."""
        if self.config.maskmix:
            if own_map is None:
                raise ValueError("this model (maskmix) needs the exemplar's own input map (exemplar_map)")
            features = torch.cat([features, F.interpolate(own_map, size=features.shape[-2:], mode="nearest")], 1)
        return correlation_features(projection(self.layer(features)), self.config.match_kernel)  # (B, HW, D)

    def correlation(self, input_map: torch.Tensor, exemplar: torch.Tensor, exemplar_map: torch.Tensor | None = None):
        """(x_S, y_S, query, key) for eq. (3-4). In inference (eval mode, no grad) the exemplar's side
        (its adaptor, T and phi: half of this network's work) is kept for the last exemplar and reused
        while the exemplar, its map and the weights are unchanged: a user editing the input map against
        one exemplar pays for it once."""
        x_s = normalize_features(self.adaptive_model_seg(input_map))
        query = self._correlation_side(x_s, input_map, self.theta)
        if self.training or torch.is_grad_enabled():
            y_s = normalize_features(self.adaptive_model_img(exemplar))
            return x_s, y_s, query, self._correlation_side(y_s, exemplar_map, self.phi)
        y_s, key = self._exemplar_side(exemplar, exemplar_map)
        return x_s, y_s, query, key

    def _exemplar_side(self, exemplar: torch.Tensor,
                       exemplar_map: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        device = exemplar.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        weights = [*self.adaptive_model_img.parameters(), *self.adaptive_model_img.buffers(), *self.layer.parameters(),
                   *self.phi.parameters()]
        # the precision: the autocast dtype and, under autocast, what the mixed-precision policy keeps in fp32
        policy = fp32_policy_state(self) if autocast is not None else None
        stamp = (autocast, policy, tuple((t.data_ptr(), _version(t)) for t in weights))
        inputs = (exemplar, exemplar_map)
        cached = self.__dict__.get("_exemplar_cache")
        if cached is not None and cached[0] == stamp and all(_same(a, b) for a, b in zip(cached[1], inputs)):
            return cached[2]
        y_s = normalize_features(self.adaptive_model_img(exemplar))
        result = (y_s, self._correlation_side(y_s, exemplar_map, self.phi))
        self.__dict__["_exemplar_cache"] = (stamp, tuple(None if t is None else t.clone() for t in inputs), result)
        return result

    def warp(self, query: torch.Tensor, key: torch.Tensor, exemplar: torch.Tensor, exemplar_map=None,
             output_size: int | None = None, chunk_size: int = 1024):
        """Eq. (4) applied to the exemplar photo (and its map): (warped at R, warped at R/4, warp_mask)."""
        c = self.config
        h = w = int(round(query.shape[1] ** 0.5))
        kh = kw = int(round(key.shape[1] ** 0.5))
        size = output_size or exemplar.shape[-1]
        if c.warp_mode == "patch":
            stride = exemplar.shape[-1] // kw
            patches = F.unfold(exemplar, stride, stride=stride)  # (B, 3 s^2, HWk)
            warped = soft_warp(query, key, patches, c.alpha, chunk_size)
            warped = F.fold(warped, (h * stride, w * stride), stride, stride=stride)  # (B, 3, R, R)
            return warped, None, None
        values = F.adaptive_avg_pool2d(exemplar, (kh, kw))  # (B, 3, R/4, R/4): avg-pool by 4
        mask_channels = 0
        if c.warp_mask and exemplar_map is not None:
            small_map = F.interpolate(exemplar_map, size=(kh, kw), mode="nearest")
            values, mask_channels = torch.cat([values, small_map], 1), small_map.shape[1]
        warped = soft_warp(query, key, values, c.alpha, chunk_size).reshape(len(query), -1, h, w)
        lowres, warp_mask = warped[:, :3], (warped[:, 3:] if mask_channels else None)
        if c.warp_mode == "nearest":
            full = F.interpolate(lowres, size=(size, size), mode="nearest")
        else:
            full = F.interpolate(lowres, size=(size, size), mode="bilinear", align_corners=False)
        return full, lowres, warp_mask

    def cycle_warp(self, query: torch.Tensor, key: torch.Tensor, warped_lowres: torch.Tensor) -> torch.Tensor:
        """r_{y->x->y} of eq. (12): r_{y->x} warped back with softmax over the input positions u."""
        h = w = int(round(key.shape[1] ** 0.5))
        return soft_warp(key, query, warped_lowres, self.config.alpha).reshape(len(key), -1, h, w)

    def forward(self, input_map: torch.Tensor, exemplar: torch.Tensor, exemplar_map: torch.Tensor | None = None,
                chunk_size: int = 1024) -> CorrespondenceOutput:
        x_s, y_s, query, key = self.correlation(input_map, exemplar, exemplar_map)  # (B, F, R/4, R/4) x2, (B, HW, D) x2
        full, lowres, warp_mask = self.warp(query, key, exemplar, exemplar_map, input_map.shape[-1], chunk_size)
        return CorrespondenceOutput(full, lowres, warp_mask, x_s, y_s, query, key)


# ------------------------------------------------------------------ translation network


class CoCosNetGenerator(ModelMixin, ConfigMixin):
    """Translation network G (section 3.2): a 1024-channel (16 ngf) map at R/32 from the condition,
    then SPADE residual blocks with positional normalisation (eq. 5) conditioned on
    cat(r_{y->x}, x_A) at every scale, self-attention at R/2, conv to RGB, tanh."""

    @register_to_config
    def __init__(self, condition_channels: int = 22, resolution: int = 256, ngf: int = 64, spade_hidden: int = 128,
                 attention: bool = True):
        super().__init__()
        if resolution % 32:
            raise ValueError(f"resolution must be a multiple of 32, got {resolution}")
        nf, cc, hid = ngf, condition_channels, spade_hidden
        self.fc = nn.Conv2d(cc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, cc, hid)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, cc, hid)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, cc, hid)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, cc, hid)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, cc, hid)
        if attention:
            self.attn = SelfAttention(4 * nf)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, cc, hid)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, cc, hid)
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, warped_exemplar: torch.Tensor, input_map: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) warped exemplar + (B, C_in, R, R) input map -> (B, 3, R, R) image in (-1, 1)."""
        cond = torch.cat([warped_exemplar, input_map], 1)  # (B, 3 + C_in, R, R)
        s = self.config.resolution // 32
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        x = self.fc(F.interpolate(cond, size=(s, s), mode="nearest"))  # (B, 16 ngf, R/32, R/32)
        x = up(self.head_0(x, cond))  # R/16
        x = self.G_middle_1(self.G_middle_0(x, cond), cond)
        x = up(x)
        x = up(self.up_0(x, cond))  # (B, 8 ngf, R/4)
        x = up(self.up_1(x, cond))  # (B, 4 ngf, R/2)
        if self.config.attention:
            x = self.attn(x)
        x = up(self.up_2(x, cond))  # (B, 2 ngf, R)
        x = self.up_3(x, cond)  # (B, ngf, R, R)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


# ------------------------------------------------------------------ discriminator


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pixHD layout): 4x4 convs, stride 2 except the last two, spectral norm +
    instance norm inside; optional self-attention after the third conv; a small decoder `dec`
    predicting the input map from those features (an auxiliary head of the authors' D)."""

    def __init__(self, input_channels: int, segmentation_channels: int, ndf: int, num_layers: int, attention: bool):
        super().__init__()
        self.model0 = nn.Sequential(nn.Conv2d(input_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))
        nf = ndf
        for n in range(1, num_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == num_layers - 1 else 2
            layer = nn.Sequential(nn.Sequential(conv(nf_prev, nf, 4, stride=stride, padding=2, spectral=True,
                                                     bias=False),
                                                nn.InstanceNorm2d(nf, affine=False)), nn.LeakyReLU(0.2))
            setattr(self, f"model{n}", layer)
        setattr(self, f"model{num_layers}", nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=2)))
        self.num_layers = num_layers
        self.attention_index = min(2, num_layers - 1)  # after the third conv (256 channels at ndf 64)
        width = min(ndf * 2 ** self.attention_index, 512)
        if attention:
            self.attn = SelfAttention(width)
        dec, c = [], width
        for _ in range(3):
            up = nn.Sequential(conv(c, c // 2, 3, spectral=True, bias=False), nn.InstanceNorm2d(c // 2, affine=False))
            dec += [nn.Upsample(scale_factor=2), up, nn.LeakyReLU(0.2)]
            c //= 2
        dec.append(nn.Conv2d(c, segmentation_channels, 3, padding=1))
        self.dec = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor, segmentation: bool = False):
        features = []
        for n in range(self.num_layers + 1):
            x = getattr(self, f"model{n}")(x)
            if n == self.attention_index and hasattr(self, "attn"):
                x = self.attn(x)
            if n == self.attention_index:
                seg_features = x
            features.append(x)
        seg = self.dec(seg_features) if segmentation else None
        return features, seg  # features[-1]: (B, 1, h, w) patch logits


class CoCosNetDiscriminator(ModelMixin, ConfigMixin):
    """Multi-scale PatchGAN with spectral norm (num_discriminators scales, avg-pooled by 2 each) on
    cat(input map, image). Returns, per scale, the list of intermediate features (for the
    discriminator feature-matching term) whose last entry is the patch logits."""

    @register_to_config
    def __init__(self, input_channels: int = 22, segmentation_channels: int = 19, ndf: int = 64, num_layers: int = 4,
                 num_discriminators: int = 2, attention: bool = True):
        super().__init__()
        for i in range(num_discriminators):
            self.add_module(f"discriminator_{i}",
                            PatchDiscriminator(input_channels, segmentation_channels, ndf, num_layers, attention))

    def forward(self, input_map: torch.Tensor, image: torch.Tensor) -> list:
        x = torch.cat([input_map, image], 1)  # (B, C_in + 3, R, R)
        outputs = []
        for i in range(self.config.num_discriminators):
            outputs.append(getattr(self, f"discriminator_{i}")(x)[0])
            x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return outputs


__all__ = ["CONFIGS", "CoCosNetCorrespondence", "CoCosNetDiscriminator", "CoCosNetGenerator", "CorrespondenceOutput",
           "SNConv2d", "network_configs"]
