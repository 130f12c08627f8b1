"""CoordGANPipeline: generate with independent structure/texture control, encode images, and
propagate labels through correspondence maps (eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from PIL import Image

from . import matching
from .correspondence import OUR_RULE, propagate
from .encoder import CoordGANEncoder, CoordGANOfficialEncoder
from .matching import PointMatches, image_size
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


def to_label_array(labels, num_classes: int | None = None) -> np.ndarray:
    """An int array [H, W], a PIL index/greyscale image (mode 1, L, P or I) or a path to one ->
    int64 [H, W] class ids, each in 0..num_classes-1 (None: any non-negative id)."""
    if isinstance(labels, (str, bytes)) or hasattr(labels, "__fspath__"):
        with Image.open(labels) as im:
            im.load()
            labels = im.copy()
    if isinstance(labels, Image.Image):
        if labels.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise ValueError(f"a label map image must hold class ids (mode L, P or I, e.g. an index PNG), "
                             f"got mode {labels.mode}")
        labels = np.asarray(labels).astype(np.int64)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map must be an integer array [H, W] of class ids, got {labels.dtype} {labels.shape}")
    if labels.size == 0:
        raise ValueError("the label map is empty")
    bad = np.unique(labels[(labels < 0) | (labels >= (num_classes if num_classes is not None else np.inf))])
    if bad.size:
        known = f"ids 0..{num_classes - 1}" if num_classes is not None else "non-negative ids"
        raise ValueError(f"unknown class ids {bad[:10].tolist()} in the label map: this model knows {known}")
    return labels.astype(np.int64)


def to_pil(image) -> Image.Image:
    """A PIL image, a uint8 array [H, W] or [H, W, 3|4], or a path to an image file -> RGB PIL image."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        try:
            with Image.open(image) as im:
                im.load()
                image = im.copy()
        except (OSError, ValueError):
            raise ValueError(f"images must be PIL images, uint8 arrays or paths of image files; {image!r} is not "
                             "an image file") from None
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        if image.ndim != 3 or image.shape[-1] not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"an image array must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        image = Image.fromarray(image[..., :3])
    if not isinstance(image, Image.Image):
        raise ValueError(f"images must be PIL images, uint8 arrays or paths, got {type(image).__name__}")
    return image.convert("RGB")


class CoordGANPipeline(DiffusionPipeline):
    """CoordGAN (Mu et al., CVPR 2022) generator + encoder.

    >>> from coordgan import tiny_random_pipeline
    >>> pipe = tiny_random_pipeline()  # or CoordGANPipeline.from_pretrained("checkpoints/coordgan-faces")
    >>> out = pipe.generate(structure_seed=[0, 0], texture_seed=[1, 2])  # one structure, two textures
    >>> len(out.images), out.images[0].size
    (2, (16, 16))
    """

    _optional_components = ["encoder"]  # an authors' generator-only checkpoint has none

    def __init__(self, generator: CoordGANGenerator, encoder: CoordGANEncoder | CoordGANOfficialEncoder | None,
                 face_frame: str | None = None):
        super().__init__()
        self.register_modules(generator=generator, encoder=encoder)
        self.register_to_config(face_frame=face_frame)  # the crop its training faces were aligned to, or None

    # ------------------------------------------------------------- helpers
    def _z(self, seeds) -> torch.Tensor:
        """One latent per seed, drawn on the CPU so a seed means the same image on every device."""
        z = [torch.randn(self.generator.config.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(z).to(self.generator.device)

    @property
    def encoder_resolution(self) -> int:
        """The size images are resized to before encoding."""
        return self.encoder.config.resolution if self.encoder is not None else self.generator.resolution

    def preprocess(self, images) -> tuple[torch.Tensor, list]:
        """PIL images / uint8 arrays / paths of any size -> ((B, 3, R, R) in [-1, 1] at the encoder's
        size, [(H, W) of each original]): every pipeline's `preprocess` answers this way. The
        authors' encoder gets their resize (PIL bilinear, as torchvision's), ours bicubic."""
        size = self.encoder_resolution
        resample = Image.BILINEAR if isinstance(self.encoder, CoordGANOfficialEncoder) else Image.BICUBIC
        gap = None if resample == Image.BILINEAR else 3.0
        tensors, sizes = [], []
        for im in _as_list(images):
            im = to_pil(im)
            sizes.append((im.height, im.width))
            im = im.resize((size, size), resample, reducing_gap=gap)
            tensors.append(torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1) / 127.5 - 1)
        return torch.stack(tensors).to(self.generator.device), sizes

    @staticmethod
    def to_images(images: torch.Tensor, size: tuple[int, int] | None = None) -> list:
        """(B, 3, h, w) in [-1, 1] -> PIL images, resized (bicubic) to size (H, W) when given."""
        arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        arr = arr.permute(0, 2, 3, 1).cpu().numpy()
        out = [Image.fromarray(a) for a in arr]
        if size is not None and tuple(size) != arr.shape[1:3]:
            out = [im.resize((size[1], size[0]), Image.BICUBIC) for im in out]
        return out

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
        maps = out.correspondence_map
        return GenerateOutput(self.to_images(out.image), maps, self.correspondence_image(maps, size),
                              out.structure_code, out.texture_code)

    __call__ = generate

    def run(self, x: torch.Tensor) -> EncodeOutput:
        """The tensor pass: a batch (B, 3, R, R) in [-1, 1] (`preprocess`) -> the encoder's
        structure and W+ texture codes and the correspondence map of the structure code."""
        if self.encoder is None:
            raise ValueError("this pipeline has no encoder, so it cannot read real images (encoding, label "
                             "propagation, point matching); convert the authors' encoder checkpoint too (python -m "
                             "coordgan.convert_official CKPT.pt --encoder ENC.pt --output DIR: train-encoder.py's "
                             "file, which holds 'e')")
        w_s, w_t = self.encoder(x)
        return EncodeOutput(w_s, w_t, self.generator.correspondence_map(w_s))

    @torch.no_grad()
    def encode(self, images) -> EncodeOutput:
        """Structure code, W+ texture code and correspondence map of each image (any size)."""
        return self.run(self.preprocess(images)[0])

    def match_points(self, image_a, image_b, points, **options) -> PointMatches:
        """Where points (x, y) of image A land in image B, and how sure the model is.

        Args:
            image_a, image_b: PIL images, uint8 arrays [H, W, 3] or paths, any size.
            points: (N, 2) pixel indices (x, y) of A (the centre of pixel (i, j) is (i, j)).
            **options: `temperature`, `resolution`, `heatmaps` of `matching.match_points`.

        Returns:
            PointMatches: B's pixel with the nearest canonical coordinate (eq. 1) for each point,
            the heat map of the relaxed eq. (1) over B's map cells, and its mass near the match.

        Example:
            >>> from coordgan import tiny_random_pipeline
            >>> pipe, photo = tiny_random_pipeline(), np.zeros((24, 20, 3), np.uint8)
            >>> m = pipe.match_points(photo, photo, [[3.0, 5.0]])
            >>> m.points.shape, m.confidence.shape, m.heatmaps.shape, pipe.dense_flow(photo, photo).shape
            ((1, 2), (1,), (1, 8, 8), (24, 20, 2))
        """
        return matching.match_points(self, image_a, image_b, points, **options)

    def dense_flow(self, image_a, image_b, **options) -> np.ndarray:
        """For every pixel of image B (at most `max_side` a side), its match in image A: float32
        (H', W', 2) pixel indices (x, y) of A (`matching.dense_flow`; options `max_side`, `resolution`)."""
        return matching.dense_flow(self, image_a, image_b, **options)

    @torch.no_grad()
    def propagate_labels(self, reference_image, reference_labels, query_images, temperature: float | None = None,
                         resolution: int | None = None, rule: str = OUR_RULE) -> list:
        """Labels of the reference image carried to each query (eq. 1), at each query's size.

        Args:
            reference_image, query_images: PIL images or uint8 arrays [H, W, 3], any size (one
                query or a list).
            reference_labels: the reference's class ids (`to_label_array`: int array [H, W], index
                PNG or its path), any size.
            temperature, rule: see `correspondence.propagate` and its RULES (OUR_RULE: the nearest
                canonical coordinate; AUTHORS_RULE: the authors' evaluation).
            resolution: OUR_RULE: the side both correspondence maps are upsampled to (default: the
                generator's resolution).

        Returns:
            One int64 array [H, W] per query.
        """
        labels = torch.from_numpy(to_label_array(reference_labels))[None]  # (1, H, W)
        queries = _as_list(query_images)
        maps = self.encode([reference_image, *queries]).correspondence_maps.float()
        resolution = resolution or self.generator.resolution
        return [propagate(labels, maps[:1], maps[i + 1 : i + 2], rule, image_size(query), temperature,
                          resolution)[0].cpu().numpy() for i, query in enumerate(queries)]


# Micro configurations for tests and demos without a checkpoint: 16x16 images, a few thousand weights.
MICRO_GENERATOR = dict(coordinate_resolution=8, channels=8, num_pairs=1, upsample_channels=(8,), z_dim=8, w_dim=8,
                       mapping_layers=2, warp_hidden=8)
MICRO_ENCODER = dict(resolution=16, channels=(8, 8), structure_channels=4, texture_channels=(8, 8), w_dim=8, num_ws=6)


def tiny_random_pipeline(seed: int = 0) -> CoordGANPipeline:
    """A randomly initialised micro pipeline (16x16 images): for tests of code around the model."""
    torch.manual_seed(seed)
    generator = CoordGANGenerator(**MICRO_GENERATOR).eval()
    return CoordGANPipeline(generator=generator, encoder=CoordGANEncoder(**MICRO_ENCODER).eval())
