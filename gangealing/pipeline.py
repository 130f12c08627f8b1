"""GANgealingPipeline: congeal images into one aligned frame, average them, propagate an edit
painted once in congealed space to every image or video frame (Figure 4), transfer keypoints
between images through congealed space (section 4.2), and dense correspondence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from PIL import Image

from . import matching
from .frames import CropFrame, crop_frame
from .matching import PointMatches
from .stylegan2 import StyleGAN2Generator
from .target import LearnedTarget
from .transformer import (ClusterClassifier, SpatialTransformer, identity_grid, normalized_to_pixels,
                          pixels_to_normalized)


@dataclass
class Alignment:
    """Tensor-level result of `GANgealingPipeline.align` (rows n-major / k-minor when every cluster is used)."""

    congealed: torch.Tensor  # (B, 3, R, R) congealed images
    grid: torch.Tensor  # (B, R, R, 2) sampling grid into `inputs` (the flip-corrected input)
    grid_flow_size: torch.Tensor  # (B, F, F, 2) the same grid at flow_size (points are mapped with it)
    residual_flow: torch.Tensor  # (B, F, F, 2)
    similarity: torch.Tensor  # (B, 2, 3)
    flipped: torch.Tensor  # (B,) bool: the input was mirrored before congealing
    cluster: torch.Tensor  # (B,) long: cluster head used
    inputs: torch.Tensor  # (B, 3, S, S) flip-corrected inputs

    def select(self, index) -> "Alignment":
        """The alignment of some of the images: `index` is a list, slice or index tensor of rows."""
        return Alignment(*[v[index] for v in vars(self).values()])

    def grid_into_original(self) -> torch.Tensor:
        """The grid indexing the unmirrored input (x negated where the input was mirrored)."""
        sign = torch.where(self.flipped, -1.0, 1.0).to(self.grid.dtype).view(-1, 1, 1, 1)
        return torch.cat([self.grid[..., :1] * sign, self.grid[..., 1:]], -1)


@dataclass
class CongealOutput:
    images: list  # PIL congealed images
    grids: torch.Tensor  # (B, R, R, 2) grids into each (square-cropped, resized) unmirrored input
    flipped: list  # bool per image
    clusters: list  # int per image


@dataclass
class CorrespondenceOutput:
    flow: np.ndarray  # float32 [S, S, 2]: for every pixel of b, its (x, y) pixel in a (model frame)
    valid: np.ndarray  # bool [S, S]: pixels of b that the congealed frame covers
    image: Image.Image  # a warped into b's frame (visualisation)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


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


def splat_inverse(grid: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert a sampling grid by bilinear splatting.

    grid (B, G, G, 2): congealed pixel -> input position (normalised). Returns, for every input
    pixel of an S x S image, the congealed position that lands there (B, S, S, 2, normalised) and
    the splat weight (B, S, S); weight 0 = not covered by the congealed frame.
    """
    b, g = grid.shape[0], grid.shape[1]
    source = identity_grid(g, b, grid.device, grid.dtype).reshape(b, -1, 2)  # congealed coords
    pos = normalized_to_pixels(grid.reshape(b, -1, 2), size)
    base = pos.floor()
    frac = pos - base
    acc = grid.new_zeros(b, size * size, 3)
    for dx in (0, 1):
        for dy in (0, 1):
            x, y = base[..., 0] + dx, base[..., 1] + dy
            w = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
            w = w * inside
            idx = (y.clamp(0, size - 1) * size + x.clamp(0, size - 1)).long()
            acc.scatter_add_(1, idx[..., None].expand(-1, -1, 3), torch.cat([source * w[..., None], w[..., None]], -1))
    weight = acc[..., 2]
    inverse = acc[..., :2] / weight.clamp(min=1e-8)[..., None]
    return inverse.view(b, size, size, 2), weight.view(b, size, size)


class GANgealingPipeline(DiffusionPipeline):
    """GANgealing (Peebles et al., CVPR 2022): generator G, spatial transformer T, learned target
    c (and, for K > 1 clusters, the classifier that picks a cluster for real images).

    >>> from gangealing import tiny_random_pipeline
    >>> pipe = tiny_random_pipeline()
    >>> images = [Image.new("RGB", (48, 40), (200, 120, 90))] * 2
    >>> out = pipe.congeal(images)
    >>> out.images[0].size, pipe.average_image(images).size
    ((32, 32), (32, 32))
    """

    _optional_components = ["classifier"]

    def __init__(self, generator: StyleGAN2Generator, transformer: SpatialTransformer, target: LearnedTarget,
                 classifier: ClusterClassifier | None = None, face_frame: str | None = None):
        super().__init__()
        self.register_modules(generator=generator, transformer=transformer, target=target, classifier=classifier)
        self.register_to_config(face_frame=face_frame)  # the crop its training faces were aligned to, or None

    # ------------------------------------------------------------- images <-> tensors
    @property
    def input_size(self) -> int:
        return self.transformer.config.input_size

    def preprocess(self, images) -> tuple[torch.Tensor, list]:
        """PIL images / uint8 arrays / paths of any size -> ((B, 3, S, S) in [-1, 1]: each image's
        centred square crop, resized; [(H, W) of each original]): every pipeline's `preprocess`
        answers this way (`frames.crop_frame(size)` says where the crop lies)."""
        s = self.input_size
        tensors, sizes = [], []
        for im in _as_list(images):
            im = to_pil(im)
            sizes.append((im.height, im.width))
            frame = crop_frame(sizes[-1])
            box = (frame.left, frame.top, frame.left + frame.side, frame.top + frame.side)
            im = im.crop(box).resize((s, s), Image.BICUBIC, reducing_gap=3.0)
            tensors.append(torch.from_numpy(np.array(im, np.float32)).permute(2, 0, 1) / 127.5 - 1)
        device = self.transformer.device
        return torch.stack(tensors).to(device, self.transformer.dtype), sizes

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

    # ------------------------------------------------------------- tensor level
    @torch.no_grad()
    def run(self, x: torch.Tensor, cluster: int | str | None = None, output_resolution: int | None = None,
            flips: torch.Tensor | None = None, **transformer_kwargs) -> Alignment:
        """The tensor pass: congeal a batch (B, 3, S, S) in [-1, 1] (`preprocess`).

        Flips: K = 1 keeps the mirror whose residual flow has the lower total variation
        (config.flip == "tv"); K > 1 asks the classifier. `cluster`: None lets the classifier
        pick (cluster and flip) per image; an int forces that cluster head (the classifier still
        decides the flip); "all" congeals every image with every head (B * K rows, n-major).
        """
        t = self.transformer
        k = t.config.num_heads
        b = x.shape[0]
        kw = dict(output_resolution=output_resolution or t.config.input_size, **transformer_kwargs)
        if k == 1 and cluster not in (None, 0, "all"):
            raise ValueError(f"this model has one cluster; got cluster={cluster!r}")
        if k == 1:
            heads = torch.zeros(b, dtype=torch.long, device=x.device)
            if flips is not None:
                flipped = flips.to(x.device).bool().view(b)
                out = t(torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x), **kw)
            elif t.config.flip == "tv":  # both orientations in one batch, keep the smoother flow
                flipped, out = t.choose_flips(x, **kw)
            else:
                flipped = torch.zeros(b, dtype=torch.bool, device=x.device)
                out = t(x, **kw)
        else:
            if self.classifier is None:
                raise ValueError("a transformer with K > 1 clusters needs the cluster classifier to congeal real "
                                 "images")
            if cluster == "all":
                flipped = self.classifier.flips_per_cluster(x).reshape(-1)  # (B*K,)
                heads = torch.arange(k, device=x.device).repeat(b)
                x = x.repeat_interleave(k, 0)
            elif cluster is None:
                heads, flipped = self.classifier.assign(x)
            else:
                if not 0 <= int(cluster) < k:
                    raise ValueError(f"cluster must be in 0..{k - 1}, got {cluster}")
                heads = torch.full((b,), int(cluster), dtype=torch.long, device=x.device)
                flipped = self.classifier.flips_per_cluster(x)[:, int(cluster)]
            if flips is not None:
                flipped = flips.to(x.device).bool().view(-1)
            x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
            out = t(x, heads=heads, **kw)
            return Alignment(out.congealed, out.grid, out.grid_flow_size, out.residual_flow, out.similarity,
                             flipped, heads, x)
        inputs = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
        return Alignment(out.congealed, out.grid, out.grid_flow_size, out.residual_flow, out.similarity, flipped,
                         heads, inputs)

    def congealed_points_to_input(self, alignment: Alignment, points: torch.Tensor) -> torch.Tensor:
        """Congealed points (B, P, 2) normalised -> pixels (0..S-1) of the unmirrored input."""
        s = self.input_size
        px = normalized_to_pixels(self.transformer.points_to_input(alignment.grid_flow_size, points), s)
        x = torch.where(alignment.flipped[:, None], s - 1 - px[..., 0], px[..., 0])
        return torch.stack([x, px[..., 1]], -1)

    def input_points_to_congealed(self, alignment: Alignment, points: torch.Tensor) -> torch.Tensor:
        """Pixels (B, P, 2) of the unmirrored input -> normalised congealed points, by nearest
        neighbour inversion of the grid at flow_size (as in the paper's PCK-transfer)."""
        s = self.input_size
        x = torch.where(alignment.flipped[:, None], s - 1 - points[..., 0], points[..., 0])
        target = pixels_to_normalized(torch.stack([x, points[..., 1]], -1), s)  # (B, P, 2)
        grid = alignment.grid_flow_size
        b, f = grid.shape[0], grid.shape[1]
        nearest = torch.cdist(target.float(), grid.reshape(b, -1, 2).float()).argmin(-1)  # (B, P)
        congealed = identity_grid(f, b, grid.device, grid.dtype).reshape(b, -1, 2)
        return congealed.gather(1, nearest[..., None].expand(-1, -1, 2))

    def _inputs_from_congealed(self, alignment: Alignment, values: torch.Tensor, mode: str = "bilinear"):
        """Values painted in congealed space (C, H, W) -> each unmirrored input frame (B, C, S, S)
        and the coverage mask (B, 1, S, S)."""
        s = self.input_size
        fine = F.interpolate(alignment.grid_flow_size.permute(0, 3, 1, 2), size=(2 * s, 2 * s), mode="bilinear",
                             align_corners=False)
        inverse, weight = splat_inverse(fine.permute(0, 2, 3, 1), s)  # (B, S, S, 2), (B, S, S)
        b = inverse.shape[0]
        values = values.to(inverse.dtype)[None].expand(b, -1, -1, -1)
        out = F.grid_sample(values, inverse, mode=mode, padding_mode="zeros", align_corners=False)
        covered = (weight > 1e-3)[:, None].to(out.dtype)
        flip = alignment.flipped.view(-1, 1, 1, 1)
        return torch.where(flip, out.flip(3), out), torch.where(flip, covered.flip(3), covered)

    # ------------------------------------------------------------- user level
    @torch.no_grad()
    def congeal(self, images, output_resolution: int | None = None, cluster: int | None = None,
                batch_size: int = 16) -> CongealOutput:
        """Aligned (congealed) PIL images, and the sampling grids into each (cropped, resized) input."""
        pil, grids, flipped, clusters = [], [], [], []
        images = _as_list(images)
        for i in range(0, len(images), batch_size):
            x, _ = self.preprocess(images[i : i + batch_size])
            a = self.run(x, cluster=cluster, output_resolution=output_resolution)
            pil += self.to_images(a.congealed)
            grids.append(a.grid_into_original().cpu())
            flipped += a.flipped.tolist()
            clusters += a.cluster.tolist()
        return CongealOutput(pil, torch.cat(grids), flipped, clusters)

    @torch.no_grad()
    def average_image(self, images, output_resolution: int | None = None, cluster: int | None = None,
                      batch_size: int = 16) -> Image.Image:
        """The average congealed image: the canvas an edit is painted on."""
        images = _as_list(images)
        if not images:
            raise ValueError("average_image needs at least one image")
        total = 0
        for i in range(0, len(images), batch_size):
            x, _ = self.preprocess(images[i : i + batch_size])
            total = total + self.run(x, cluster=cluster, output_resolution=output_resolution).congealed.float().sum(0)
        return self.to_images((total / len(images))[None])[0]

    def _edit_tensor(self, edit, channels: int) -> torch.Tensor:
        arr = np.asarray(edit.convert("RGBA") if isinstance(edit, Image.Image) else edit)
        if arr.ndim != 3 or arr.shape[-1] != channels:
            raise ValueError(f"the edit must be an RGBA PIL image or a uint8 array [H, W, 4], got shape {arr.shape}")
        return torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1).to(self.transformer.device)

    def propagate_edit(self, edit_rgba, images, cluster: int | None = None, batch_size: int = 8):
        """Composite an RGBA edit painted on the average congealed image onto every image or video
        frame (Figure 4), `batch_size` at a time.

        Args:
            edit_rgba: the edit, an RGBA PIL image or uint8 array [H, W, 4], any size (it is
                stretched over the congealed frame); alpha 0 = unchanged.
            images: a PIL image or uint8 array [H, W, 3], a list of them, or any other iterable
                of them, e.g. a generator of video frames.
            cluster: the cluster head (K > 1); None lets the classifier choose per image.

        Returns:
            For a list (or one image), a list of edited PIL images at the original sizes. For any
            other iterable, a generator of them that reads and edits `batch_size` frames at a
            time, so a long video never sits in memory.

        Example:

        >>> from gangealing import tiny_random_pipeline
        >>> pipe = tiny_random_pipeline()
        >>> edit = np.zeros((32, 32, 4), np.uint8); edit[8:16, :] = (255, 0, 0, 255)
        >>> frames = (Image.new("RGB", (40, 30), (0, 90, i)) for i in range(20))
        >>> edited = pipe.propagate_edit(edit, frames)  # nothing computed yet
        >>> [im.size for im in edited][-1], len(pipe.propagate_edit(edit, [Image.new("RGB", (8, 8))]))
        ((40, 30), 1)
        """
        edit = self._edit_tensor(edit_rgba, 4)  # (4, H, W) in [0, 1], checked now, not at the first frame
        if isinstance(images, (list, tuple, Image.Image, np.ndarray)) or not hasattr(images, "__iter__"):
            return list(self._propagate_edit_stream(edit, _as_list(images), cluster, batch_size))
        return self._propagate_edit_stream(edit, images, cluster, batch_size)

    @torch.no_grad()
    def _propagate_edit_stream(self, edit: torch.Tensor, images, cluster, batch_size: int):
        chunk = []
        for image in images:
            chunk.append(to_pil(image))
            if len(chunk) < batch_size:
                continue
            yield from self._propagate_edit_batch(edit, chunk, cluster)
            chunk = []
        if chunk:
            yield from self._propagate_edit_batch(edit, chunk, cluster)

    def _propagate_edit_batch(self, edit: torch.Tensor, images: list, cluster) -> list:
        x, sizes = self.preprocess(images)
        warped, covered = self._inputs_from_congealed(self.run(x, cluster=cluster), edit)  # (B, 4, S, S)
        layers = zip(images, sizes, warped, covered)
        return [_composite(im, crop_frame(size), rgba * cov) for im, size, rgba, cov in layers]

    @torch.no_grad()
    def propagate_labels(self, label_map, images, cluster: int | None = None, batch_size: int = 8) -> list:
        """A dense label map (int [H, W]) drawn in congealed space -> int64 label arrays in the
        model frame (S x S) of every image; 0 where the congealed frame does not reach."""
        labels = np.asarray(label_map)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"label_map must be an integer array [H, W], got {labels.dtype} {labels.shape}")
        values = torch.from_numpy(labels.astype(np.float32))[None].to(self.transformer.device)
        out = []
        images = _as_list(images)
        for i in range(0, len(images), batch_size):
            x, _ = self.preprocess(images[i : i + batch_size])
            warped, covered = self._inputs_from_congealed(self.run(x, cluster=cluster), values, mode="nearest")
            out += [lab.round().long().cpu().numpy() for lab in (warped * covered)[:, 0]]
        return out

    @torch.no_grad()
    def transfer_keypoints(self, image_a, keypoints_a, image_b, flip_permutation=None,
                           cluster: int | None = None) -> np.ndarray:
        """Keypoints [K, 2] (x, y pixels of image_a) -> pixels of image_b, through congealed space.

        Row i of the result predicts keypoint i of image_b: when exactly one of the two images is
        mirrored to congeal it, left/right keypoints swap, and `flip_permutation` (K indices)
        puts them back."""
        kp = np.asarray(keypoints_a, np.float32)
        if kp.ndim != 2 or kp.shape[1] != 2:
            raise ValueError(f"keypoints_a must be an array [K, 2] of (x, y) pixels, got shape {kp.shape}")
        x, sizes = self.preprocess([image_a, image_b])
        a = self.run(x, cluster=cluster)
        out = matching.move_points(self, a, kp, *sizes).astype(np.float32)
        if bool(a.flipped[0]) != bool(a.flipped[1]) and flip_permutation is not None:
            perm = np.asarray(flip_permutation)
            if sorted(perm.tolist()) != list(range(len(kp))):
                raise ValueError(f"flip_permutation must be a permutation of 0..{len(kp) - 1}")
            out = out[perm]
        return out

    def match_points(self, image_a, image_b, points, **options) -> PointMatches:
        """Where points (x, y) of image A land in image B, and how sure the congealing is.

        Args:
            image_a, image_b: PIL images, uint8 arrays [H, W, 3] or paths, any size.
            points: (N, 2) pixel indices (x, y) of A (the centre of pixel (i, j) is (i, j)).
            **options: `cluster`, `heatmaps` of `matching.match_points`.

        Returns:
            PointMatches: into congealed space by A's transformation, out by B's; the heat map of
            where the congealed cells near the point land in B, and its mass near the match times
            how well congealed cells cover the point.

        Example:
            >>> from gangealing import tiny_random_pipeline
            >>> pipe, photo = tiny_random_pipeline(), np.zeros((24, 20, 3), np.uint8)
            >>> m = pipe.match_points(photo, photo, [[3.0, 5.0]])
            >>> m.points.shape, m.confidence.shape, pipe.dense_flow(photo, photo).shape
            ((1, 2), (1,), (24, 20, 2))
        """
        return matching.match_points(self, image_a, image_b, points, **options)

    def dense_flow(self, image_a, image_b, **options) -> np.ndarray:
        """For every pixel of image B (at most `max_side` a side), its match in image A through
        congealed space: float32 (H', W', 2) pixel indices (x, y) of A, NaN where B's pixel is out
        of the congealed frame's reach (`matching.dense_flow`; options `cluster`, `max_side`)."""
        return matching.dense_flow(self, image_a, image_b, **options)

    @torch.no_grad()
    def dense_correspondence(self, image_a, image_b, cluster: int | None = None) -> CorrespondenceOutput:
        """For every pixel of b (model frame, S x S), its pixel in a, through congealed space."""
        s = self.input_size
        x, _ = self.preprocess([image_a, image_b])
        a = self.run(x, cluster=cluster)
        grid_a = a.select([0]).grid_flow_size.permute(0, 3, 1, 2)  # (1, 2, F, F)
        # (1, 2, S, S): normalised positions in a's (flip-corrected) frame
        coords, covered = self._inputs_from_congealed(a.select([1]), grid_a[0])
        px = normalized_to_pixels(coords[0].permute(1, 2, 0), s)
        if bool(a.flipped[0]):
            px = torch.stack([s - 1 - px[..., 0], px[..., 1]], -1)
        valid = covered[0, 0] > 0
        sample = F.grid_sample(x[:1], pixels_to_normalized(px, s)[None].to(x.dtype), align_corners=False,
                               padding_mode="border")
        vis = self.to_images(torch.where(valid, sample[0], torch.zeros_like(sample[0]))[None])[0]
        return CorrespondenceOutput(px.float().cpu().numpy(), valid.cpu().numpy(), vis)


def _composite(image: Image.Image, frame: CropFrame, rgba: torch.Tensor) -> Image.Image:
    """Alpha-composite an RGBA layer (4, S, S) in [0, 1], covering the crop frame, onto image."""
    pixels = (rgba.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
    layer = Image.fromarray(pixels, "RGBA")
    side = int(frame.side)
    layer = layer.resize((side, side), Image.BILINEAR)
    out = image.convert("RGBA")
    canvas = Image.new("RGBA", out.size, (0, 0, 0, 0))
    canvas.paste(layer, (int(frame.left), int(frame.top)))
    return Image.alpha_composite(out, canvas).convert("RGB")
