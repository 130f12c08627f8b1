"""CoCosNetPipeline: exemplar-based translation (section 3) and dense cross-domain correspondence
(Figure 8) from a label mask / edge map and an exemplar photo of any size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from PIL import Image

from .matching import match_points
from .encodings import FACE_EDGE_CHANNELS, FACE_PARTS, channel_encoding, face_edge_channels, pose_channels, resize_channels
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


def to_label_array(labels, num_classes: int) -> np.ndarray:
    """An int array [H, W], a PIL index/greyscale image or a path to one -> int64 [H, W] class ids."""
    labels = _open(labels)
    if isinstance(labels, Image.Image):
        if labels.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"a label map image must hold class ids (mode L, P or I, e.g. an index PNG), got mode {labels.mode}")
        labels = np.asarray(labels)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map must be an integer array [H, W] of class ids, got {labels.dtype} {labels.shape}")
    if labels.size == 0:
        raise ValueError("the label map is empty")
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if bad.size:
        raise ValueError(f"unknown class ids {bad[:10].tolist()} in the label map: this model knows ids 0..{num_classes - 1}")
    return labels.astype(np.int64)


def labels_to_input(labels: torch.Tensor, kind: str, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, C, H, W) network input: one-hot masks ("mask"), or one channel of
    part boundaries ("edge": a pixel whose right or lower neighbour has another class)."""
    if kind == "mask":
        if int(labels.max()) >= num_classes or int(labels.min()) < 0:
            raise ValueError(f"class ids must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
        # contiguous NCHW: the permuted one-hot is channels-last in memory, which made every elementwise
        # op on it and on the tensors derived from it ~1.7x slower
        return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
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

    def __init__(self, correspondence_network: CoCosNetCorrespondence, generator: CoCosNetGenerator):
        super().__init__()
        self.register_modules(correspondence_network=correspondence_network, generator=generator)

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
                raise ValueError(f"an edge map must be an image or an array [H, W] (bool, uint8 or float in [0, 1]), got {edge.dtype} {edge.shape}")
            size = edge.shape
            x = F.interpolate(torch.from_numpy(edge.astype(np.float32))[None, None], size=(r, r), mode="bilinear", align_corners=False)
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

    def encode_exemplar(self, exemplar) -> torch.Tensor:
        """A PIL image / uint8 array [H, W, 3] of any size -> (1, 3, R, R) in [-1, 1]."""
        exemplar = _open(exemplar)
        if isinstance(exemplar, np.ndarray):
            if exemplar.ndim == 2:
                exemplar = np.stack([exemplar] * 3, -1)
            if exemplar.ndim != 3 or exemplar.shape[-1] not in (3, 4) or exemplar.dtype != np.uint8:
                raise ValueError(f"an exemplar array must be uint8 [H, W, 3], got {exemplar.dtype} {exemplar.shape}")
            exemplar = Image.fromarray(exemplar[..., :3])
        if not isinstance(exemplar, Image.Image):
            raise ValueError(f"the exemplar must be a PIL image, a uint8 array or a path, got {type(exemplar).__name__}")
        if min(exemplar.size) < 8:
            raise ValueError(f"the exemplar is too small ({exemplar.size[0]}x{exemplar.size[1]}); give at least 8x8 pixels")
        r = self.resolution
        im = exemplar.convert("RGB").resize((r, r), Image.BICUBIC)
        t = torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        return t.to(self.device, self.correspondence_network.dtype)

    @staticmethod
    def to_images(images: torch.Tensor, size: tuple[int, int] | None = None) -> list:
        """(B, 3, h, w) in [-1, 1] -> PIL images, resized (bicubic) to size (H, W) when given."""
        arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
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
        y = self.encode_exemplar(exemplar)
        y_map = None
        if self.needs_exemplar_map:
            if exemplar_map is None:
                raise ValueError("this model also needs the exemplar's own map: pass exemplar_map= (same kind as input_map)")
            y_map = self.encode_input_map(exemplar_map)[0]
        image, corr = self.run(x, y, y_map)
        warped = self.to_images(corr.warped_exemplar, size)[0] if return_warped else None
        return TranslationOutput(self.to_images(image, size)[0], warped)

    __call__ = translate

    @torch.inference_mode()
    def correspondence(self, input_map, exemplar, points, exemplar_map=None) -> np.ndarray:
        """Where the given points of the input map land in the exemplar (Figure 8).

        points: (N, 2) pixel coordinates (x, y) in the input map. Returns float32 (N, 2) pixel
        coordinates (x, y) in the exemplar at its own size: the centre of the exemplar cell of
        highest M(u, v) (eq. 3) at the correspondence resolution (R/4). `matching.match_points` also
        gives each point's confidence and heat map (the softmax row of eq. 4).
        """
        return match_points(self, input_map, exemplar, points, exemplar_map, heatmaps=False).points


def build_pipeline(config: str | dict = "tiny", **overrides) -> CoCosNetPipeline:
    """A randomly initialised pipeline of a CONFIGS entry (overrides as in `network_configs`)."""
    corr_kwargs, gen_kwargs, _ = network_configs(config, **overrides)
    return CoCosNetPipeline(correspondence_network=CoCosNetCorrespondence(**corr_kwargs), generator=CoCosNetGenerator(**gen_kwargs))


def tiny_random_pipeline(seed: int = 0, input_kind: str = "mask", num_classes: int = 12) -> CoCosNetPipeline:
    """A randomly initialised micro pipeline (64x64, mask input with the 12 classes of the synthetic
    faces), in eval mode: for tests of code around the model."""
    torch.manual_seed(seed)
    channels = num_classes if input_kind == "mask" else 1
    pipe = build_pipeline("micro", input_kind=input_kind, input_channels=channels)
    pipe.correspondence_network.eval()
    pipe.generator.eval()
    return pipe


__all__ = ["CONFIGS", "CoCosNetPipeline", "TranslationOutput", "build_pipeline", "labels_to_input", "tiny_random_pipeline"]
