"""Rendering: structure and texture vectors in, images with exact dense ground truth out.

Geometry (the structure vector) is a smooth invertible map from image to canonical coordinates,
    pixel p  --similarity^-1-->  --yaw^-1-->  --shape deformation-->  u (canonical),
written in this direction so every pixel finds its canonical coordinate in closed form. Labels
are the template's part at u, so they, the coordinates and the keypoints agree exactly; the
keypoints (canonical points) are sent the other way by Newton's method on the same map. A
mirror is applied last, as an exact horizontal flip with left/right names swapped.

Appearance (the texture vector) only colours the template: part colours, patterns attached to
the surface (functions of u, so they move with the object), lighting on a pseudo-3D head,
background and noise. Edges are anti-aliased from the signed distances (coverage of a pixel
~ 0.5 - distance in pixels), so one sample per pixel is enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from .templates import TEMPLATES, Category

POSE_PARAMS = ("rotation", "log_scale", "shift_x", "shift_y", "yaw", "mirror")
YAW_RADIUS = 2.0  # the yaw squash is a Moebius map of x / YAW_RADIUS, see `_pixel_to_canonical`


@dataclass(frozen=True)
class PoseRange:
    """Ranges from which `sample` draws the pose part of a structure vector."""

    rotation: float  # radians, uniform in [-r, r]
    scale: tuple[float, float]  # log-uniform
    shift: float  # image half-widths, uniform in [-s, s] per axis
    yaw: float  # Moebius parameter, uniform in [-y, y]
    mirror: float  # probability of a horizontal mirror


POSES = {
    # Roughly aligned crops, like CelebA-HQ or AFHQ: what CoordGAN and CoCosNet train on.
    "aligned": PoseRange(rotation=0.08, scale=(0.92, 1.05), shift=0.04, yaw=0.25, mirror=0.0),
    # Loosely aligned crops with visible pose changes, no mirrors: where a correspondence
    # model has to earn its keep over copying labels unchanged.
    "medium": PoseRange(rotation=0.3, scale=(0.75, 1.05), shift=0.12, yaw=0.35, mirror=0.0),
    # Unaligned images for GANgealing: wide rotation, scale, shift, and mirrors.
    "wide": PoseRange(rotation=0.6, scale=(0.5, 1.0), shift=0.25, yaw=0.4, mirror=0.5),
}


@dataclass
class Batch:
    """A batch of rendered images with their exact ground truth (all numpy)."""

    image: np.ndarray  # uint8 [n, H, W, 3]
    labels: np.ndarray  # int64 [n, H, W], 0 = background
    coords: np.ndarray  # float32 [n, H, W, 2], canonical (x, y) in [-1, 1]; NaN on background
    keypoints: np.ndarray  # float32 [n, K, 2], pixel units, x right, y down
    visible: np.ndarray  # bool [n, K], inside the image
    structure: np.ndarray  # float32 [n, S]
    texture: np.ndarray  # float32 [n, T]

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, index) -> "Batch":
        """Index or slice along the batch axis (an int keeps the batch axis, of length 1)."""
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1 if index != -1 else None)
        return Batch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(batches: list["Batch"]) -> "Batch":
        return Batch(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(Batch)}
        )


# --------------------------------------------------------------------------------------------
# Parameter layouts
# --------------------------------------------------------------------------------------------


def structure_names(cat: Category) -> list[str]:
    return list(POSE_PARAMS) + [f"shape_{i}" for i in range(cat.num_shape_params)]


def texture_names(cat: Category) -> list[str]:
    names = []
    for c in cat.class_names[1:]:
        names += [f"{c}_r", f"{c}_g", f"{c}_b"]
    names += ["detail_r", "detail_g", "detail_b"]
    names += ["pattern_frequency", "pattern_angle", "pattern_phase", "pattern_amplitude"]
    names += ["light_azimuth", "light_elevation", "light_ambient"]
    names += ["background_a_r", "background_a_g", "background_a_b"]
    names += ["background_b_r", "background_b_g", "background_b_b"]
    names += ["background_frequency", "background_angle", "background_phase", "background_mix"]
    names += ["noise_sigma", "noise_seed"]
    return names


# --------------------------------------------------------------------------------------------
# Sampling of structure and texture vectors
# --------------------------------------------------------------------------------------------


class _Columns:
    """Hands out columns of one uniform draw, so `sample(n)` is a prefix of `sample(n + m)`."""

    def __init__(self, uniform: np.ndarray):
        self.u, self.i = uniform, 0

    def take(self, k: int = 1) -> np.ndarray:
        out = self.u[:, self.i : self.i + k]
        self.i += k
        return out


STRUCTURE_DRAWS = 32  # columns reserved per image; more than any category needs
TEXTURE_DRAWS = 96


def sample_structure(cat: Category, uniform: np.ndarray, pose: PoseRange) -> np.ndarray:
    col = _Columns(uniform)
    n = len(uniform)
    lo, hi = np.log(pose.scale[0]), np.log(pose.scale[1])
    s = np.empty((n, len(POSE_PARAMS) + cat.num_shape_params), np.float64)
    s[:, 0] = pose.rotation * (2 * col.take()[:, 0] - 1)
    s[:, 1] = lo + (hi - lo) * col.take()[:, 0]
    s[:, 2:4] = pose.shift * (2 * col.take(2) - 1)
    s[:, 4] = pose.yaw * (2 * col.take()[:, 0] - 1)
    s[:, 5] = col.take()[:, 0] < pose.mirror
    s[:, 6:] = 2 * col.take(cat.num_shape_params) - 1
    return s.astype(np.float32)


def _pick(candidates, col: _Columns, jitter: float) -> np.ndarray:
    candidates = np.asarray(candidates, np.float64)
    choice = np.minimum((col.take()[:, 0] * len(candidates)).astype(int), len(candidates) - 1)
    return np.clip(candidates[choice] + jitter * (2 * col.take(3) - 1), 0, 1)


def sample_texture(cat: Category, uniform: np.ndarray) -> np.ndarray:
    col = _Columns(uniform)
    colors: dict[str, np.ndarray] = {}
    for c in cat.class_names[1:]:  # classes with their own palette first, then aliases
        spec = cat.base_colors[c]
        if not isinstance(spec, tuple):
            colors[c] = _pick(spec, col, cat.color_jitter.get(c, 0.05))
    for c in cat.class_names[1:]:
        spec = cat.base_colors[c]
        if isinstance(spec, tuple):
            colors[c] = np.clip(colors[spec[0]] * spec[1], 0, 1)
    detail = _pick(cat.base_colors["detail"], col, 0.06)
    pattern = np.stack(
        [
            6 + 12 * col.take()[:, 0],  # frequency, radians per canonical unit
            np.pi * col.take()[:, 0],  # angle
            2 * np.pi * col.take()[:, 0],  # phase
            cat.pattern_amplitude * col.take()[:, 0],
        ],
        1,
    )
    light = np.stack(
        [
            2 * np.pi * col.take()[:, 0],  # azimuth
            0.6 + 0.8 * col.take()[:, 0],  # elevation (radians above the image plane)
            0.45 + 0.35 * col.take()[:, 0],  # ambient share
        ],
        1,
    )
    background_a = 0.1 + 0.8 * col.take(3)
    background_b = np.clip(background_a + 0.5 * (2 * col.take(3) - 1), 0, 1)
    background = np.stack(
        [
            2 + 8 * col.take()[:, 0],  # frequency, radians per image half-width
            np.pi * col.take()[:, 0],
            2 * np.pi * col.take()[:, 0],
            col.take()[:, 0],  # mix between stripes and a vertical gradient
        ],
        1,
    )
    noise = np.stack([0.03 * col.take()[:, 0], np.floor(col.take()[:, 0] * 2**24)], 1)
    parts = [colors[c] for c in cat.class_names[1:]]
    parts += [detail, pattern, light, background_a, background_b, background, noise]
    return np.concatenate(parts, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def _pixel_to_canonical(cat: Category, px: torch.Tensor, py: torch.Tensor, s: torch.Tensor):
    """Normalised image points (planar px, py: (n, P), in [-1, 1]) -> canonical (ux, uy).

    The unmirrored map. Points no pose can bring near the object (outside the yaw map's domain)
    are sent far away, where every part's signed distance is positive: background.
    """
    rotation, scale = s[:, 0, None], torch.exp(s[:, 1, None])
    yaw = s[:, 4, None]
    qx, qy = px - s[:, 2, None], py - s[:, 3, None]
    cos, sin = torch.cos(rotation) / scale, torch.sin(rotation) / scale
    qx, qy = cos * qx + sin * qy, cos * qy - sin * qx  # inverse rotation and scale
    # Yaw: an asymmetric squash of x, the Moebius map x -> (x + k) / (1 + k x) (on x / R), which
    # keeps x = +-R fixed, moves the centre line and compresses one side like a turned head.
    x = qx / YAW_RADIUS
    denominator = 1 - yaw * x
    valid = denominator > 0.25
    x = (x - yaw) / denominator.clamp_min(0.25) * YAW_RADIUS
    vx, vy = torch.where(valid, x, 10.0), torch.where(valid, qy, 10.0)
    return cat.deform(vx, vy, s[:, len(POSE_PARAMS) :])


def _canonical_to_pixel(cat: Category, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Inverse of `_pixel_to_canonical` for a few points u (n, K, 2) -> (n, K, 2): Newton.

    Solved in float64 from the deformation-free closed form; the map is a diffeomorphism (its
    Jacobian determinant stays positive, see tests), so Newton converges in a few steps.
    """
    u, s = u.double(), s.double()
    rotation, scale = s[:, 0, None], torch.exp(s[:, 1, None])
    yaw = s[:, 4, None]
    x = u[..., 0] / YAW_RADIUS
    qx, qy = (x + yaw) / (1 + yaw * x) * YAW_RADIUS, u[..., 1]
    cos, sin = torch.cos(rotation) * scale, torch.sin(rotation) * scale
    px, py = cos * qx - sin * qy + s[:, 2, None], sin * qx + cos * qy + s[:, 3, None]

    def residual(px, py):
        ux, uy = _pixel_to_canonical(cat, px, py, s)
        return ux - u[..., 0], uy - u[..., 1]

    eps = 1e-6
    for _ in range(30):
        fx, fy = residual(px, py)
        if max(fx.abs().max(), fy.abs().max()) < 1e-10:
            break
        ax, ay = residual(px + eps, py)  # finite-difference Jacobian, column by column
        bx, by = residual(px, py + eps)
        j11, j21, j12, j22 = (ax - fx) / eps, (ay - fy) / eps, (bx - fx) / eps, (by - fy) / eps
        det = j11 * j22 - j12 * j21
        px = px - (j22 * fx - j12 * fy) / det
        py = py - (j11 * fy - j21 * fx) / det
    fx, fy = residual(px, py)
    error = max(fx.abs().max().item(), fy.abs().max().item()) if fx.numel() else 0.0
    if not error < 1e-6:
        raise RuntimeError(f"keypoint inversion did not converge (residual {error:.2e})")
    return torch.stack([px, py], -1)


# --------------------------------------------------------------------------------------------
# Appearance
# --------------------------------------------------------------------------------------------


def _coverage(d: torch.Tensor, pixels_per_unit: torch.Tensor) -> torch.Tensor:
    """Fraction of a pixel inside a shape whose signed distance at the pixel centre is d."""
    return (0.5 - d * pixels_per_unit).clamp_(0, 1)


def _render_tensors(cat: Category, s: torch.Tensor, t: torch.Tensor, resolution: int):
    n, r = len(s), resolution
    layout = {name: i for i, name in enumerate(texture_names(cat))}
    col = lambda name: t[:, layout[name], None]  # noqa: E731  (n, 1)
    rgb = lambda prefix: t[:, None, layout[prefix + "_r"] : layout[prefix + "_r"] + 3]  # noqa: E731

    g = (torch.arange(r, dtype=torch.float32) + 0.5) / r * 2 - 1
    px, py = g.repeat(r).expand(n, -1), g.repeat_interleave(r).expand(n, -1)  # (n, P) row-major
    ux, uy = _pixel_to_canonical(cat, px, py, s)
    # Pixels per canonical unit; the deformation and yaw change it by a few ten per cent at
    # most, which only shifts the anti-aliasing ramp by a fraction of a pixel.
    ppu = (torch.exp(s[:, 1, None]) * r / 2).clamp_min(1e-3)  # (n, 1)

    # Lighting on a pseudo-3D head: an ellipsoid normal in canonical coordinates.
    rx, ry = (ux - cat.light_center[0]) / cat.light_radius, (uy - cat.light_center[1]) / cat.light_radius
    r2 = rx * rx + ry * ry
    nz = (1 - r2).clamp_min(0.05).sqrt()
    az, el = col("light_azimuth"), col("light_elevation")
    lx, ly, lz = torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)
    diffuse = ((rx * lx + ry * ly + nz * lz) * torch.rsqrt(r2 + nz * nz)).clamp_min(0)
    ambient = col("light_ambient")
    shade = (ambient + (1 - ambient) * diffuse)[..., None]  # (n, P, 1)

    # Surface pattern (stripes, moving with u) on the pattern classes.
    angle = col("pattern_angle")
    along = ux * torch.cos(angle) + uy * torch.sin(angle)
    wave = 0.5 + 0.5 * torch.sin(col("pattern_frequency") * along + col("pattern_phase"))
    darken = 1 - col("pattern_amplitude") * wave**3

    # Painter's order, composited top-down with the "over" operator: a layer's weight is its
    # coverage times the transparency left by the layers above it. One matmul with the layer
    # colours then gives the picture (cheaper than blending three channels per layer).
    shapes = [shape for _, shape in cat.parts] + list(cat.details)
    distances = [shape.sdf(ux, uy) for shape in shapes]
    labels = torch.zeros(n, r * r, dtype=torch.int64)
    for (class_id, _), d in zip(cat.parts, distances):
        labels.masked_fill_(d < 0, class_id)
    colors = [rgb(cat.class_names[c])[:, 0] for c, _ in cat.parts]
    colors += [rgb("detail")[:, 0] if src == "detail" else t.new_tensor(src).expand(n, 3) for src in cat.detail_sources]
    patterned = [cat.class_names[c] in cat.pattern_classes for c, _ in cat.parts] + [False] * len(cat.details)
    transparency = torch.ones(n, r * r)
    weights = torch.empty(n, r * r, len(shapes))
    for i in reversed(range(len(shapes))):
        a = _coverage(distances[i], ppu)
        weights[..., i] = a * transparency
        transparency.mul_(1 - a)
        if patterned[i]:
            weights[..., i] *= darken
    foreground = torch.bmm(weights, torch.stack(colors, 1)) * shade  # (n, P, 3)

    # Background, in image coordinates (it does not move with the object).
    bg_angle = col("background_angle")
    along = px * torch.cos(bg_angle) + py * torch.sin(bg_angle)
    stripes = 0.5 + 0.5 * torch.sin(col("background_frequency") * along + col("background_phase"))
    mix = col("background_mix")
    w = (mix * stripes + (1 - mix) * (0.5 + 0.5 * py))[..., None]
    background = rgb("background_a") * (1 - w) + rgb("background_b") * w

    image = foreground + transparency[..., None] * background
    foreground_mask = labels > 0
    coords = torch.stack([ux, uy], -1).masked_fill_(~foreground_mask[..., None], float("nan"))
    return image.reshape(n, r, r, 3), labels.reshape(n, r, r), coords.reshape(n, r, r, 2)


def _noise(texture: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Per-image pixel noise (uniform, std sigma), seeded by the texture vector (part of it)."""
    sigma, seed = texture[:, -2], texture[:, -1]
    out = np.empty((len(texture), *shape), np.float32)
    for i in range(len(texture)):
        out[i] = np.random.default_rng(int(seed[i])).random(shape, np.float32)
        out[i] -= 0.5
        out[i] *= sigma[i] * math.sqrt(12)
    return out


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _category(name: str) -> Category:
    if name not in TEMPLATES:
        raise ValueError(f"unknown category {name!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def category(name: str) -> Category:
    """The template of a category: class_names, keypoint_names, flip_permutation, ..."""
    return _category(name)


CHUNK_PIXELS = 1 << 17  # render in chunks of ~128k pixels: fits the cache, fastest here


@torch.inference_mode()
def render(name: str, structure, texture, resolution: int = 64) -> Batch:
    """Render images of category `name` from structure [n, S] and texture [n, T] vectors.

    `render(s, t1)` and `render(s, t2)` have identical labels, coords, keypoints and visibility:
    the texture only colours the template.
    """
    cat = _category(name)
    structure = np.asarray(structure, np.float32)
    texture = np.asarray(texture, np.float32)
    n_s, n_t = len(structure_names(cat)), len(texture_names(cat))
    if structure.ndim != 2 or structure.shape[1] != n_s:
        raise ValueError(f"structure must have shape [n, {n_s}] for {name}, got {structure.shape}")
    if texture.ndim != 2 or texture.shape[1] != n_t:
        raise ValueError(f"texture must have shape [n, {n_t}] for {name}, got {texture.shape}")
    if len(structure) != len(texture):
        raise ValueError(f"structure and texture differ in length: {len(structure)} vs {len(texture)}")
    if not (isinstance(resolution, (int, np.integer)) and 8 <= resolution <= 4096):
        raise ValueError(f"resolution must be an int in [8, 4096], got {resolution!r}")
    if not (np.isfinite(structure).all() and np.isfinite(texture).all()):
        raise ValueError("structure and texture must be finite")

    n, r = len(structure), int(resolution)
    image = np.empty((n, r, r, 3), np.uint8)
    label = np.empty((n, r, r), np.int64)
    coord = np.empty((n, r, r, 2), np.float32)
    chunk = max(1, CHUNK_PIXELS // (r * r))
    for i in range(0, n, chunk):
        j = min(n, i + chunk)
        s, t = torch.from_numpy(structure[i:j]), torch.from_numpy(texture[i:j])
        im, lab, co = _render_tensors(cat, s, t, r)
        im += torch.from_numpy(_noise(texture[i:j], (r, r, 3)))
        image[i:j] = im.mul_(255).round_().clamp_(0, 255).to(torch.uint8).numpy()
        label[i:j], coord[i:j] = lab.numpy(), co.numpy()

    s = torch.from_numpy(structure)
    kp_canonical = torch.tensor(cat.keypoints, dtype=torch.float32).expand(n, -1, -1)
    kp = _canonical_to_pixel(cat, kp_canonical, s).numpy() if n else np.zeros((0, cat.num_keypoints, 2))
    keypoints = ((kp + 1) / 2 * r).astype(np.float32)  # normalised -> pixel units

    mirrored = structure[:, 5] >= 0.5
    if mirrored.any():
        class_perm = np.asarray(cat.class_flip_permutation)
        image[mirrored] = image[mirrored, :, ::-1]
        label[mirrored] = class_perm[label[mirrored, :, ::-1]]
        coord[mirrored] = coord[mirrored, :, ::-1] * np.float32([-1, 1])
        flipped = keypoints[mirrored][:, list(cat.flip_permutation)]
        flipped[..., 0] = r - flipped[..., 0]
        keypoints[mirrored] = flipped
    visible = (
        (keypoints[..., 0] >= 0) & (keypoints[..., 0] < r) & (keypoints[..., 1] >= 0) & (keypoints[..., 1] < r)
    )
    return Batch(image, label, coord, keypoints, visible, structure, texture)


def sample(name: str, n: int, resolution: int = 64, seed=0, pose: str = "aligned") -> Batch:
    """Draw `n` random images of category `name` (same seed, same bytes).

    `seed` is an int or a sequence of ints (e.g. `(seed, block)` for independent streams).
    `pose` picks the structure ranges: "aligned" (default; CoordGAN, CoCosNet) or "wide"
    (rotation, scale, shift and mirrors, for GANgealing). `sample(n)` is a prefix of
    `sample(n + m)` for the same seed.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    structure = sample_structures(name, n, seed, pose)
    texture = sample_textures(name, n, seed)
    return render(name, structure, texture, resolution)


def sample_textures(name: str, n: int, seed=0) -> np.ndarray:
    """Only texture vectors, e.g. to re-texture a structure: `render(name, s, sample_textures(...))`."""
    cat = _category(name)
    _, texture_seed = np.random.SeedSequence(seed).spawn(2)
    return sample_texture(cat, np.random.default_rng(texture_seed).random((n, TEXTURE_DRAWS)))


def sample_structures(name: str, n: int, seed=0, pose: str = "aligned") -> np.ndarray:
    """Only structure vectors (the same ones `sample` draws for this seed)."""
    cat = _category(name)
    if pose not in POSES:
        raise ValueError(f"unknown pose range {pose!r}; choose one of {sorted(POSES)}")
    structure_seed, _ = np.random.SeedSequence(seed).spawn(2)
    return sample_structure(cat, np.random.default_rng(structure_seed).random((n, STRUCTURE_DRAWS)), POSES[pose])
