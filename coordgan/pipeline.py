"""CoordGANPipeline: generate with independent structure/texture control, encode images, and
propagate labels through correspondence maps (eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from PIL import Image

from .correspondence import AUTHORS_TEMPERATURE, RULES, authors_transfer
from .correspondence import propagate_labels as propagate_label_map
from .encoder import CoordGANEncoder, CoordGANOfficialEncoder
from .model import CoordGANGenerator
from .visualize import correspondence_colors


@dataclass
class GenerateOutput:
    images: list  # PIL images
    correspondence_maps: torch.Tensor  # (B, 2, h, w) in [-1, 1]
    correspondence_images: list  # PIL colour renderings of the maps, at the image size
    structure_codes: torch.Tensor  # (B, w_dim)
    texture_codes: torch.Tensor  # (B, num_ws, w_dim)


@dataclass
class EncodeOutput:
    structure_codes: torch.Tensor  # (B, w_dim)
    texture_codes: torch.Tensor  # (B, num_ws, w_dim) W+
    correspondence_maps: torch.Tensor  # (B, 2, h, w)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def to_label_array(labels) -> np.ndarray:
    """An int array [H, W], a PIL index/greyscale image or a path to one -> int64 [H, W]."""
    if isinstance(labels, (str, bytes)) or hasattr(labels, "__fspath__"):
        labels = Image.open(labels)
    if isinstance(labels, Image.Image):
        if labels.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"a label image must hold class ids (mode L, P or I), got mode {labels.mode}")
        labels = np.asarray(labels)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array [H, W], got {labels.dtype} {labels.shape}")
    if labels.min() < 0:
        raise ValueError("labels must be non-negative class ids")
    return labels.astype(np.int64)


class CoordGANPipeline(DiffusionPipeline):
    """CoordGAN (Mu et al., CVPR 2022) generator + encoder.

    >>> from coordgan import tiny_random_pipeline
    >>> pipe = tiny_random_pipeline()  # or CoordGANPipeline.from_pretrained("checkpoints/coordgan-faces")
    >>> out = pipe.generate(structure_seed=[0, 0], texture_seed=[1, 2])  # one structure, two textures
    >>> len(out.images), out.images[0].size
    (2, (16, 16))
    """

    _optional_components = ["encoder"]  # an authors' generator-only checkpoint has none

    def __init__(self, generator: CoordGANGenerator, encoder: CoordGANEncoder | CoordGANOfficialEncoder | None):
        super().__init__()
        self.register_modules(generator=generator, encoder=encoder)

    @classmethod
    def from_official_checkpoint(cls, path, **options) -> "CoordGANPipeline":
        """Import the authors' CoordGAN checkpoint (NVlabs/CoordGAN train.py / train-encoder.py).

        Args:
            path: the .pt file (its `g_ema` is the generator; a train-encoder.py file also gives `e`).
            **options: `encoder` (a separate train-encoder.py file for the encoder), `config` (one
                of convert_official.OFFICIAL_CONFIGS; default: read from the file), `code_means`.

        Returns:
            The pipeline, in eval mode; without an encoder it generates, and `encode` /
            `propagate_labels` say that real images need the encoder checkpoint. A file that is not
            such a checkpoint raises ValueError.
        """
        from .convert_official import official_components  # the converter builds on this module, not the reverse

        return cls(**official_components(path, **options))

    # ------------------------------------------------------------- helpers
    def _z(self, seeds) -> torch.Tensor:
        """One latent per seed, drawn on the CPU so a seed means the same image on every device."""
        z = [torch.randn(self.generator.config.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(z).to(self.generator.device)

    @property
    def encoder_resolution(self) -> int:
        """The size images are resized to before encoding."""
        return self.encoder.config.resolution if self.encoder is not None else self.generator.resolution

    def preprocess(self, images) -> torch.Tensor:
        """PIL images / uint8 arrays of any size -> (B, 3, R, R) in [-1, 1] at the encoder's size.
        The authors' encoder gets their resize (PIL bilinear, as torchvision's), ours bicubic."""
        size = self.encoder_resolution
        resample = Image.BILINEAR if isinstance(self.encoder, CoordGANOfficialEncoder) else Image.BICUBIC
        gap = None if resample == Image.BILINEAR else 3.0
        out = []
        for im in _as_list(images):
            if isinstance(im, np.ndarray):
                if im.ndim == 2:
                    im = np.stack([im] * 3, -1)
                if im.ndim != 3 or im.shape[-1] not in (3, 4):
                    raise ValueError(f"an image array must be [H, W, 3], got shape {im.shape}")
                im = Image.fromarray(im[..., :3].astype(np.uint8))
            if not isinstance(im, Image.Image):
                raise ValueError(f"images must be PIL images or uint8 arrays, got {type(im).__name__}")
            im = im.convert("RGB").resize((size, size), resample, reducing_gap=gap)
            out.append(torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1) / 127.5 - 1)
        return torch.stack(out).to(self.generator.device)

    @staticmethod
    def postprocess(images: torch.Tensor) -> list:
        arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    def correspondence_image(self, correspondence_maps: torch.Tensor, size: int | None = None) -> list:
        """Colour renderings (PIL) of correspondence maps, upsampled (nearest) to `size`."""
        size = size or self.generator.resolution
        maps = F.interpolate(correspondence_maps.float(), size=(size, size), mode="nearest")
        return [Image.fromarray(a) for a in correspondence_colors(maps)]

    # ------------------------------------------------------------- entry points
    @torch.no_grad()
    def generate(
        self,
        structure_seed=0,
        texture_seed=0,
        structure_seed_2=None,
        texture_seed_2=None,
        structure_mix: float = 0.0,
        texture_mix: float = 0.0,
        truncation: float = 1.0,
        structure_code: torch.Tensor | None = None,
        texture_code: torch.Tensor | None = None,
        resolution: int | None = None,
    ) -> GenerateOutput:
        """Images from seeds (ints or equal-length lists) or explicit w codes.

        `structure_mix` in [0, 1] interpolates the structure code from `structure_seed` towards
        `structure_seed_2` (and `texture_mix` likewise), in w space after truncation.
        `resolution`: one of `generator.resolutions` (default the largest; the authors' code
        renders a 512 px model at 128 px unless told otherwise). No noise is added, so a seed
        always gives the same image (the authors' forward draws fresh noise on every call:
        `generator(..., randomize_noise=True)` does that).
        """
        g = self.generator
        if structure_code is None:
            w_s = g.structure_code(self._z(_as_list(structure_seed)), truncation)
            if structure_seed_2 is not None and structure_mix:
                w_s = w_s.lerp(g.structure_code(self._z(_as_list(structure_seed_2)), truncation), structure_mix)
        else:
            w_s = structure_code.to(g.device)
        if texture_code is None:
            w_t = g.texture_code(self._z(_as_list(texture_seed)), truncation)
            if texture_seed_2 is not None and texture_mix:
                w_t = w_t.lerp(g.texture_code(self._z(_as_list(texture_seed_2)), truncation), texture_mix)
        else:
            w_t = texture_code.to(g.device)
        if len(w_s) != len(w_t):
            raise ValueError(f"{len(w_s)} structure codes but {len(w_t)} texture codes")
        out = g(structure_code=w_s, texture_code=w_t, randomize_noise=False, resolution=resolution)
        size = out.image.shape[-1]
        return GenerateOutput(self.postprocess(out.image), out.correspondence_map, self.correspondence_image(out.correspondence_map, size),
                              out.structure_code, out.texture_code)

    __call__ = generate

    @torch.no_grad()
    def encode(self, images) -> EncodeOutput:
        """Structure code, W+ texture code and correspondence map of each image (any size)."""
        if self.encoder is None:
            raise ValueError("this pipeline has no encoder, so it cannot read real images (encoding, reconstruction, label "
                             "propagation); convert the authors' encoder checkpoint too (python -m coordgan.convert_official "
                             "CKPT.pt --encoder ENC.pt --output DIR: train-encoder.py's file, which holds 'e')")
        w_s, w_t = self.encoder(self.preprocess(images))
        return EncodeOutput(w_s, w_t, self.generator.correspondence_map(w_s))

    @torch.no_grad()
    def reconstruct(self, images) -> list:
        """G(E(x)): how the model sees each image."""
        enc = self.encode(images)
        g = self.generator
        stages = (enc.texture_codes.shape[1] - 2 - 2 * g.config.num_pairs) // 2  # the authors' 12-entry W+ stops at 128 px
        resolution = g.resolutions[max(0, min(stages, len(g.resolutions) - 1))]
        return self.postprocess(g.synthesize(enc.correspondence_maps, enc.texture_codes, randomize_noise=False, resolution=resolution))

    @torch.no_grad()
    def propagate_labels(self, reference_image, reference_labels, query_images, temperature: float | None = None, resolution: int | None = None,
                         rule: str = "ours") -> list:
        """Labels of the reference image carried to each query by eq. (1), at each query's size.

        rule "ours": both correspondence maps are upsampled (bilinear: they are smooth coordinate
        fields) to `resolution` (default: the image resolution); each query pixel takes the label
        of the reference pixel with the nearest canonical coordinate (temperature None), or the
        argmax of the affinity-weighted label average (the relaxed rule, temperature > 0).
        rule "authors": their evaluation (eval_corr.get_seg_transfer_img, soft mode): the one-hot
        labels resized bilinearly to the correspondence maps' size, `correspondence.authors_transfer`
        there (temperature None: their 0.01), the argmax, then a nearest resize to each query.
        """
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        labels = to_label_array(reference_labels)
        queries = _as_list(query_images)
        query_sizes = [(q.size[1], q.size[0]) if isinstance(q, Image.Image) else np.asarray(q).shape[:2] for q in queries]
        maps = self.encode([reference_image, *queries]).correspondence_maps.float()
        num_classes = int(labels.max()) + 1
        if rule == "authors":
            one_hot = F.one_hot(torch.from_numpy(labels), num_classes).permute(2, 0, 1)[None].float().to(maps.device)
            soft = F.interpolate(one_hot, size=maps.shape[-2:], mode="bilinear")  # (1, K, h, w), as the authors' loaders
        else:
            resolution = resolution or self.generator.resolution
            maps = F.interpolate(maps, size=(resolution, resolution), mode="bilinear", align_corners=False)
            ref = torch.from_numpy(labels)[None, None].float()
            ref = F.interpolate(ref, size=(resolution, resolution), mode="nearest")[:, 0].long().to(maps.device)
        results = []
        for i, size in enumerate(query_sizes):
            if rule == "authors":
                pred = authors_transfer(soft, maps[:1], maps[i + 1 : i + 2], temperature or AUTHORS_TEMPERATURE).argmax(1)
            else:
                pred = propagate_label_map(ref, maps[:1], maps[i + 1 : i + 2], num_classes, temperature=temperature)
            pred = F.interpolate(pred[:, None].float(), size=tuple(size), mode="nearest")[0, 0].long()
            results.append(pred.cpu().numpy())
        return results


# Micro configurations for tests and demos without a checkpoint: 16x16 images, a few thousand weights.
MICRO_GENERATOR = dict(coordinate_resolution=8, channels=8, num_pairs=1, upsample_channels=(8,), z_dim=8, w_dim=8, mapping_layers=2, warp_hidden=8)
MICRO_ENCODER = dict(resolution=16, channels=(8, 8), structure_channels=4, texture_channels=(8, 8), w_dim=8, num_ws=6)


def tiny_random_pipeline(seed: int = 0) -> CoordGANPipeline:
    """A randomly initialised micro pipeline (16x16 images): for tests of code around the model."""
    torch.manual_seed(seed)
    generator = CoordGANGenerator(**MICRO_GENERATOR).eval()
    return CoordGANPipeline(generator=generator, encoder=CoordGANEncoder(**MICRO_ENCODER).eval())
