"""COATPipeline: object appearance transfer (eq. 4) and point matching through the confident
correspondences of eq. 2, for photos of any size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from .correspondence import ScaleMatches, align_features, confident_matches
from . import matching
from .matching import PointMatches, cell_centres
from .model import COATDecoder, COATEncoder, COATModulationEncoder, network_configs


@dataclass
class COATForward:
    """Everything one forward pass computes (tensors), for training and evaluation."""

    image: torch.Tensor  # (B, 3, R, R) I_{2->1}
    content_features: list  # per scale (B, C_l, h, w) F^{1,l}
    style_features: list  # F^{2,l}
    aligned_features: list  # F-hat^l (eq. 3)
    content_keys: list  # per scale (B, D, h, w): what eq. 1 compares
    style_keys: list
    matches: list  # per scale ScaleMatches, the confident set p^l (eq. 2)
    styles: list  # per decoder layer (w_k, spatial or None) from E_mod


def coat_forward(encoder: COATEncoder, modulation_encoder: COATModulationEncoder, decoder: COATDecoder,
                 content: torch.Tensor, style: torch.Tensor, n: int) -> COATForward:
    """Eq. (1)-(4) on batches content / style (B, 3, R, R) in [-1, 1] with `n` content layers.

    Latent extraction (E on both images), latent alignment at every scale (MNN on the matching
    features, hard swap of F^l, eq. 3), latent decoding D(E_mod(...)) (eq. 4)."""
    if content.shape != style.shape:
        raise ValueError(f"content and style batches must have the same shape, got {tuple(content.shape)} and "
                         f"{tuple(style.shape)}")
    both, keys = encoder(torch.cat([content, style]),
                         with_matching=True)  # one pass for the pair: per scale (2B, C, h, w)
    f1 = [f[: len(content)] for f in both]
    f2 = [f[len(content):] for f in both]
    k1, k2 = [k[: len(content)] for k in keys], [k[len(content):] for k in keys]
    matches = [confident_matches(a.detach(), b.detach()) for a, b in zip(k1, k2)]
    aligned = [align_features(a, b, m) for a, b, m in zip(f1, f2, matches)]
    masks = [m.mask.view(-1, 1, *m.size).float() for m in matches]
    styles = modulation_encoder(f1, aligned, masks, n)
    return COATForward(decoder(styles), f1, f2, aligned, k1, k2, matches, styles)


@dataclass
class ScaleCorrespondences:
    """The confident matches of one scale, as points in the input images (pixels, x right, y down;
    pixel (r, c) spans [c, c + 1) x [r, r + 1), so a cell centre is at +0.5)."""

    content_points: np.ndarray  # float32 (N, 2) in the content image (pixel indices x, y)
    style_points: np.ndarray  # float32 (N, 2) in the style image (pixel indices x, y)
    size: tuple  # (h, w) of the feature map of this scale


@dataclass
class TransferOutput:
    image: Image.Image  # I_{2->1} at the content image's size
    matches: list  # one ScaleCorrespondences per scale, fine to coarse
    n: int  # content layers used


# Copied from coordgan.pipeline.to_pil
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


class COATPipeline(DiffusionPipeline):
    """COAT (Jeon et al., BMVC 2022): correspondence-driven object appearance transfer.

    >>> from coat import tiny_random_pipeline
    >>> pipe = tiny_random_pipeline()  # or COATPipeline.from_pretrained("checkpoints/coat-faces")
    >>> content = Image.new("RGB", (80, 60), (200, 120, 60))
    >>> out = pipe.transfer(content, Image.new("RGB", (64, 64), (20, 90, 160)), n=3)
    >>> out.image.size, len(out.matches)
    ((80, 60), 3)
    >>> pipe.match_points(content, content, [[10.0, 20.0]]).points.shape
    (1, 2)
    """

    def __init__(self, encoder: COATEncoder, modulation_encoder: COATModulationEncoder, decoder: COATDecoder,
                 face_frame: str | None = None):
        super().__init__()
        self.register_modules(encoder=encoder, modulation_encoder=modulation_encoder, decoder=decoder)
        self.register_to_config(face_frame=face_frame)  # the crop its training faces were aligned to, or None

    @property
    def resolution(self) -> int:
        return self.encoder.config.resolution

    @property
    def num_layers(self) -> int:
        return self.decoder.num_layers

    @property
    def default_content_layers(self) -> int:
        """The n the model was trained with (the decoder's config `content_layers`; when unset, a
        third of the layers)."""
        n = self.decoder.config.content_layers
        return int(n) if n is not None else max(1, self.num_layers // 3)

    @property
    def content_layers_range(self) -> tuple[int, int]:
        """The n the model was trained for (the decoder's config `content_layers_range`, drawn per
        step by `train/coat.py --n-range`); without one, every n from 0 to the layer count."""
        trained = self.decoder.config.get("content_layers_range")
        return (int(trained[0]), int(trained[1])) if trained else (0, self.num_layers)

    # ------------------------------------------------------------- conversions
    def preprocess(self, images) -> tuple[torch.Tensor, list]:
        """PIL images / uint8 arrays [H, W, 3] / paths of any size -> ((B, 3, R, R) in [-1, 1],
        [(H, W) of each original]): every pipeline's `preprocess` answers this way."""
        tensors, sizes = [], []
        r = self.resolution
        for image in images if isinstance(images, (list, tuple)) else [images]:
            image = to_pil(image)
            if min(image.size) < 8:
                raise ValueError(f"the image is too small ({image.size[0]}x{image.size[1]}); give at least 8x8 pixels")
            sizes.append((image.height, image.width))
            if image.size != (r, r):
                image = image.resize((r, r), Image.BICUBIC)
            tensors.append(torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1) / 127.5 - 1)
        return torch.stack(tensors).to(self.device, self.encoder.dtype), sizes

    # Copied from coordgan.pipeline.CoordGANPipeline.to_images
    @staticmethod
    def to_images(images: torch.Tensor, size: tuple[int, int] | None = None) -> list:
        """(B, 3, h, w) in [-1, 1] -> PIL images, resized (bicubic) to size (H, W) when given."""
        arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        arr = arr.permute(0, 2, 3, 1).cpu().numpy()
        out = [Image.fromarray(a) for a in arr]
        if size is not None and tuple(size) != arr.shape[1:3]:
            out = [im.resize((size[1], size[0]), Image.BICUBIC) for im in out]
        return out

    def check_n(self, n) -> int:
        n = self.default_content_layers if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= int(n) <= self.num_layers:
            raise ValueError(f"n (content layers) must be an int in 0..{self.num_layers}, got {n!r}")
        return int(n)

    # ------------------------------------------------------------- entry points
    def run(self, content: torch.Tensor, style: torch.Tensor, n: int | None = None) -> COATForward:
        """Batched tensors (B, 3, R, R) in [-1, 1] -> COATForward (eq. 1-4)."""
        r = self.resolution
        for name, t in (("content", content), ("style", style)):
            if t.ndim != 4 or t.shape[1] != 3 or tuple(t.shape[-2:]) != (r, r):
                raise ValueError(f"{name} must be a batch (B, 3, {r}, {r}), got {tuple(t.shape)}")
        return coat_forward(self.encoder, self.modulation_encoder, self.decoder, content, style, self.check_n(n))

    @torch.inference_mode()
    def transfer(self, content, style, n: int | None = None) -> TransferOutput:
        """Transfer the appearance of `style` onto the object of `content` (eq. 4).

        Args:
            content, style: PIL images, uint8 arrays [H, W, 3] or paths, any size (resized to the
                model's resolution; the result has the content's size).
            n: content layers (0..num_layers): decoder layers k < n are modulated from the
                content features, the rest from the aligned ones; smaller n transfers more.
                Default: the trained n.
        Returns:
            TransferOutput: the image and, per scale, the confident matches as points.
        Example:
            >>> import numpy as np
            >>> pipe = tiny_random_pipeline()  # or COATPipeline.from_pretrained("checkpoints/coat-faces")
            >>> photo = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
            >>> out = pipe.transfer(photo, photo[:, ::-1], n=3)
            >>> out.image.size, out.n, len(out.matches)
            ((80, 48), 3, 3)
        """
        x, (size,) = self.preprocess([content])
        y, (style_size,) = self.preprocess([style])
        out = self.run(x, y, n)
        scales = [ScaleCorrespondences(*matches_to_points(m, 0, size, style_size), m.size) for m in out.matches]
        return TransferOutput(self.to_images(out.image, size)[0], scales, self.check_n(n))

    __call__ = transfer

    def match_points(self, image_a, image_b, points, **options) -> PointMatches:
        """Where points (x, y) of image A land in image B, and how sure the model is.

        Args:
            image_a, image_b: PIL images, uint8 arrays [H, W, 3] or paths, any size.
            points: (N, 2) pixel indices (x, y) of A (the centre of pixel (i, j) is (i, j)).
            **options: `scale` (feature scale, 0 = finest), `heatmaps` of `matching.match_points`.

        Returns:
            PointMatches: the centre of B's cell with the highest S (eq. 1), confidence Q (eq. 2),
            and a heat map over B's cells.
        """
        return matching.match_points(self, image_a, image_b, points, **options)

    def dense_flow(self, image_a, image_b, **options) -> np.ndarray:
        """For every cell of image A's feature map at `scale` (h x w), its best match in image B
        (eq. 1): float32 (h, w, 2) pixel indices (x, y) of B (`matching.dense_flow`)."""
        return matching.dense_flow(self, image_a, image_b, **options)


def build_pipeline(config: str | dict = "tiny", content_layers: int | None = None) -> COATPipeline:
    """A randomly initialised pipeline of a CONFIGS entry."""
    from .model import CONFIGS

    enc, mod, dec = network_configs(config)
    trained = CONFIGS[config]["content_layers"] if isinstance(config, str) else config["content_layers"]
    n = content_layers if content_layers is not None else trained
    decoder = COATDecoder(**dec, content_layers=int(n))
    return COATPipeline(COATEncoder(**enc), COATModulationEncoder(**mod), decoder)


def tiny_random_pipeline(seed: int = 0) -> COATPipeline:
    """The `tiny` pipeline with seeded random weights (tests, and the app before training)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = build_pipeline("tiny")
    return pipe.to(torch.device("cpu"))


def matches_to_points(m: ScaleMatches, b: int, size_a: tuple, size_b: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The confident set p of batch element b as point arrays in images of sizes (H, W)."""
    i, j = (t.cpu().numpy() for t in m.pairs(b))
    return cell_centres(i, m.size, size_a), cell_centres(j, m.size, size_b)

