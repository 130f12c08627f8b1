"""CoCosNetPipeline: exemplar-based translation (section 3) and dense cross-domain correspondence
(Figure 8) from a label mask / edge map and an exemplar photo of any size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from PIL import Image

from . import matching
from .matching import PointMatches
from .encodings import (FACE_EDGE_CHANNELS, FACE_PARTS, channel_encoding, face_edge_channels, pose_channels,
                        resize_channels)
from .model import CONFIGS, CoCosNetCorrespondence, CoCosNetGenerator, CorrespondenceOutput, network_configs
from .openpose import keypoints_and_canvas


@dataclass
class TranslationOutput:
    image: Image.Image  # the translation x_B-hat, RGB, at the input map's size
    warped_exemplar: Image.Image | None  # r_{y->x} (eq. 4) at the input map's size; None unless return_warped


def _open(x):
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        with Image.open(x) as im:
            im.load()
            return im.copy()
    return x


# Copied from coordgan.pipeline.to_label_array
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


def labels_to_input(labels: torch.Tensor, kind: str, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, C, H, W) network input: one-hot masks ("mask"), or one channel of
    part boundaries ("edge": a pixel whose right or lower neighbour has another class)."""
    if kind == "mask":
        if int(labels.max()) >= num_classes or int(labels.min()) < 0:
            raise ValueError(f"class ids must lie in 0..{num_classes - 1}, got "
                             f"{int(labels.min())}..{int(labels.max())}")
        # contiguous NCHW: the permuted one-hot is channels-last in memory, which made every elementwise
        # op on it and on the tensors derived from it ~1.7x slower
        return F.one_hot(labels.long(),
                         num_classes).permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    if kind != "edge":
        raise ValueError(f"label maps convert to 'mask' or 'edge' inputs, not {kind!r}")
    edges = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    edges[..., :, :-1] |= labels[..., :, :-1] != labels[..., :, 1:]
    edges[..., :-1, :] |= labels[..., :-1, :] != labels[..., 1:, :]
    return edges[:, None].float()


class CoCosNetPipeline(DiffusionPipeline):
    """CoCosNet (Zhang et al., CVPR 2020): the correspondence network and the translation network.

    >>> from cocosnet import tiny_random_pipeline
    >>> pipe = tiny_random_pipeline()  # or CoCosNetPipeline.from_pretrained("checkpoints/cocosnet-faces")
    >>> mask = np.zeros((48, 40), np.int64); mask[10:30, 8:30] = 1
    >>> out = pipe.translate(mask, Image.new("RGB", (90, 70), (200, 120, 60)), return_warped=True)
    >>> out.image.size, out.warped_exemplar.size
    ((40, 48), (40, 48))
    """

    def __init__(self, correspondence_network: CoCosNetCorrespondence, generator: CoCosNetGenerator,
                 face_frame: str | None = None):
        super().__init__()
        self.register_modules(correspondence_network=correspondence_network, generator=generator)
        self.register_to_config(face_frame=face_frame)  # the crop its training faces were aligned to, or None

    # ------------------------------------------------------------- what the model expects
    @property
    def input_kind(self) -> str:
        """"mask" (label map of class ids), "edge" (an edge image) or "channels" (a float array [C, H, W])."""
        return self.correspondence_network.config.input_kind

    @property
    def input_channels(self) -> int:
        return self.correspondence_network.config.input_channels

    @property
    def num_classes(self) -> int | None:
        """Class ids 0..num_classes-1 for mask models; None for other input kinds."""
        return self.input_channels if self.input_kind == "mask" else None

    @property
    def class_names(self) -> tuple | None:
        names = self.correspondence_network.config.class_names
        return tuple(names) if names else None

    @property
    def resolution(self) -> int:
        return self.correspondence_network.config.resolution

    @property
    def needs_exemplar_map(self) -> bool:
        """True for models that also read the exemplar's own map (the authors' maskmix models)."""
        return bool(self.correspondence_network.config.maskmix)

    # ------------------------------------------------------------- conversions
    def encode_input_map(self, input_map) -> tuple[torch.Tensor, tuple[int, int]]:
        """The user's map -> ((1, C_in, R, R) network input, (H, W) of the original)."""
        r, kind = self.resolution, self.input_kind
        if kind == "mask":
            labels = to_label_array(input_map, self.num_classes)
            size = labels.shape
            t = torch.from_numpy(labels)[None, None].float()
            x = labels_to_input(F.interpolate(t, size=(r, r), mode="nearest")[:, 0].long(), "mask", self.num_classes)
        elif kind == "edge":
            edge = _open(input_map)
            if isinstance(edge, Image.Image):
                edge = np.asarray(edge.convert("L"), np.float32) / 255.0
            edge = np.asarray(edge)
            if edge.dtype == bool:
                edge = edge.astype(np.float32)
            elif edge.dtype == np.uint8:
                edge = edge.astype(np.float32) / 255.0
            if edge.ndim != 2 or not np.issubdtype(edge.dtype, np.floating):
                raise ValueError("an edge map must be an image or an array [H, W] (bool, uint8 or float in [0, 1]), "
                                 f"got {edge.dtype} {edge.shape}")
            size = edge.shape
            x = F.interpolate(torch.from_numpy(edge.astype(np.float32))[None, None], size=(r, r), mode="bilinear",
                              align_corners=False)
            x = x.expand(-1, self.input_channels, -1, -1)
        else:
            x, size = self._encode_channels(input_map)
        if min(size) < 8:
            raise ValueError(f"the input map is too small ({size[1]}x{size[0]}); give at least 8x8 pixels")
        return x.to(self.device, self.correspondence_network.dtype), tuple(size)

    @property
    def channel_encoding(self) -> str | None:
        """For "channels" models, which of the authors' stacks they read (encodings.py): "face_edges"
        (15 channels, CelebA-HQ edges: built from a face-parsing map), "pose" (20 channels,
        DeepFashion: built from 18 keypoints) or None (only raw arrays). Decided by the channel count."""
        return channel_encoding(self.input_kind, self.input_channels)

    def _encode_channels(self, input_map) -> tuple[torch.Tensor, tuple[int, int]]:
        """A "channels" model's input -> ((1, C, R, R), (H, W)): a raw float array [C, H, W] as it is
        (bilinear to R); for "face_edges" models also a face label map (array / index PNG / path, or
        {"labels": ..., "photo": ...} for the Canny edges); for "pose" models also keypoints
        (array [18, 2|3], list, OpenPose JSON dict / text / file; canvas R x R unless the dict has
        "canvas_height" / "canvas_width")."""
        r, c, encoding = self.resolution, self.input_channels, self.channel_encoding
        if isinstance(input_map, torch.Tensor):
            input_map = input_map.float().cpu().numpy()
        if encoding is None or (isinstance(input_map, np.ndarray) and input_map.ndim == 3):
            arr = np.asarray(input_map, np.float32)
            if arr.ndim != 3 or arr.shape[0] != c:
                raise ValueError(f"this model takes a float array [{c}, H, W] as input map, got shape {arr.shape}")
            x = F.interpolate(torch.from_numpy(arr)[None], size=(r, r), mode="bilinear", align_corners=False)
            return x, tuple(arr.shape[1:])
        if encoding == "face_edges":
            photo = None
            if isinstance(input_map, dict):
                input_map, photo = input_map.get("labels"), _open(input_map.get("photo"))
            labels = to_label_array(input_map, len(FACE_PARTS))
            channels, nearest = face_edge_channels(labels, photo), (0, FACE_EDGE_CHANNELS - 1)
        else:  # "pose"
            keypoints, size = keypoints_and_canvas(input_map, (r, r))
            channels, nearest = pose_channels(keypoints, size), (0, 1, 2)
        return torch.from_numpy(resize_channels(channels, (r, r), nearest))[None], tuple(channels.shape[1:])

    def preprocess(self, images) -> tuple[torch.Tensor, list]:
        """Exemplar photos (PIL images / uint8 arrays / paths) of any size -> ((B, 3, R, R) in [-1, 1],
        [(H, W) of each original]): every pipeline's `preprocess` answers this way. Input maps have
        their own conversion, `encode_input_map`."""
        tensors, sizes = [], []
        r = self.resolution
        for exemplar in images if isinstance(images, (list, tuple)) else [images]:
            exemplar = to_pil(exemplar)
            if min(exemplar.size) < 8:
                raise ValueError(f"the exemplar is too small ({exemplar.size[0]}x{exemplar.size[1]}); give at least "
                                 "8x8 pixels")
            sizes.append((exemplar.height, exemplar.width))
            im = exemplar.resize((r, r), Image.BICUBIC)
            tensors.append(torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1) / 127.5 - 1)
        return torch.stack(tensors).to(self.device, self.correspondence_network.dtype), sizes

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

    # ------------------------------------------------------------- entry points
    def run(self, input_maps: torch.Tensor, exemplars: torch.Tensor, exemplar_maps: torch.Tensor | None = None):
        """Batched tensors in, (translation (B, 3, R, R), CorrespondenceOutput) out."""
        corr: CorrespondenceOutput = self.correspondence_network(input_maps, exemplars, exemplar_maps)
        return self.generator(corr.warped_exemplar, input_maps), corr

    @torch.inference_mode()
    def translate(self, input_map, exemplar, return_warped: bool = False, exemplar_map=None) -> TranslationOutput:
        """Translate `input_map` (label map of class ids: int array [H, W], index/greyscale PNG or its
        path; an edge image for edge models; a float array [C, H, W] for "channels" models, or what
        `channel_encoding` builds them from: a face label map / 18 pose keypoints) in the
        style of `exemplar` (a photo of any size). The outputs have the input map's size (W, H).
        `exemplar_map` (the exemplar's own map, same kinds) is needed only when `needs_exemplar_map`."""
        x, size = self.encode_input_map(input_map)
        y, _ = self.preprocess([exemplar])
        y_map = None
        if self.needs_exemplar_map:
            if exemplar_map is None:
                raise ValueError("this model also needs the exemplar's own map: pass exemplar_map= (same kind "
                                 "as input_map)")
            y_map = self.encode_input_map(exemplar_map)[0]
        image, corr = self.run(x, y, y_map)
        warped = self.to_images(corr.warped_exemplar, size)[0] if return_warped else None
        return TranslationOutput(self.to_images(image, size)[0], warped)

    __call__ = translate

    def match_points(self, image_a, image_b, points, **options) -> PointMatches:
        """Where points of the input map land in the exemplar (Figure 8), and how sure the model is.

        Args:
            image_a: the input map, as `translate` takes it; image_b: the exemplar photo, any size.
            points: (N, 2) pixel indices (x, y) of the input map (the centre of pixel (i, j) is (i, j)).
            **options: `exemplar_map` (models with `needs_exemplar_map`), `alpha`, `heatmaps` of
                `matching.match_points`.

        Returns:
            PointMatches: the centre of the exemplar cell of highest M(u, v) (eq. 3) at the
            correspondence resolution (R/4), in the exemplar's pixels; the heat map is the point's
            softmax row of eq. (4), the confidence its mass within one cell of the match.

        Example:
            >>> from cocosnet import tiny_random_pipeline
            >>> pipe, exemplar = tiny_random_pipeline(), Image.new("RGB", (90, 70))
            >>> mask = np.zeros((48, 40), np.int64); mask[10:30, 8:30] = 1
            >>> m = pipe.match_points(mask, exemplar, [[20.0, 20.0]])
            >>> m.points.shape, m.heatmaps.shape, pipe.dense_flow(mask, exemplar).shape
            ((1, 2), (1, 16, 16), (16, 16, 2))
        """
        return matching.match_points(self, image_a, image_b, points, **options)

    def dense_flow(self, image_a, image_b, **options) -> np.ndarray:
        """For every cell of the input map at the correspondence resolution (f x f), its best match
        in the exemplar: float32 (f, f, 2) pixel indices (x, y) of the exemplar (`matching.dense_flow`;
        option `exemplar_map`)."""
        return matching.dense_flow(self, image_a, image_b, **options)


def build_pipeline(config: str | dict = "tiny", **overrides) -> CoCosNetPipeline:
    """A randomly initialised pipeline of a CONFIGS entry (overrides as in `network_configs`)."""
    corr_kwargs, gen_kwargs, _ = network_configs(config, **overrides)
    return CoCosNetPipeline(correspondence_network=CoCosNetCorrespondence(**corr_kwargs),
                            generator=CoCosNetGenerator(**gen_kwargs))


def tiny_random_pipeline(seed: int = 0, input_kind: str = "mask", num_classes: int = 12) -> CoCosNetPipeline:
    """A randomly initialised micro pipeline (64x64, mask input with the 12 classes of the synthetic
    faces), in eval mode: for tests of code around the model."""
    torch.manual_seed(seed)
    channels = num_classes if input_kind == "mask" else 1
    pipe = build_pipeline("micro", input_kind=input_kind, input_channels=channels)
    pipe.correspondence_network.eval()
    pipe.generator.eval()
    return pipe


__all__ = ["CONFIGS", "CoCosNetPipeline", "TranslationOutput", "build_pipeline", "labels_to_input",
           "tiny_random_pipeline"]
