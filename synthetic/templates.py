"""Category templates: parts drawn as signed-distance shapes in canonical coordinates.

A template lives in the canonical square [-1, 1]^2 (x right, y down, like the image). Each part
is a shape with a signed distance d(u) (negative inside) and a class id; parts are painted in
order, so a later part covers an earlier one. Structure variation never changes a template:
shape changes are smooth deformations of the canonical plane (`Deformation`), so a canonical
coordinate always means the same point of the object, in every image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


# --------------------------------------------------------------------------------------------
# Shapes. Each maps canonical points, given as planar x and y tensors of one shape, to an
# approximate signed distance, exact on the boundary (d = 0) and first-order accurate near it,
# which is all anti-aliasing needs. (Planar x, y rather than (..., 2) is ~2x faster on a CPU.)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ellipse:
    center: tuple[float, float]
    radii: tuple[float, float]
    angle: float = 0.0  # radians, counter-clockwise in the (x right, y down) frame

    def sdf(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.center[0], y - self.center[1]
        if self.angle:
            dx, dy = c * dx + s * dy, -s * dx + c * dy  # rotate into the ellipse frame
        a, b = self.radii
        x2, y2 = dx * dx, dy * dy
        k2 = x2 * (1 / a**2) + y2 * (1 / b**2)  # k = |(x/a, y/b)|, k = 1 on the boundary
        g2 = x2 * (1 / a**4) + y2 * (1 / b**4)  # |grad k|^2 * k^2
        # d = (k - 1) / |grad k| = (k^2 - k) / sqrt(g2): a first-order distance.
        return (k2 - k2.sqrt()) * g2.clamp_min(1e-12).rsqrt()

    def bounds(self) -> tuple[float, float, float, float]:
        r = max(self.radii)
        return (self.center[0] - r, self.center[1] - r, self.center[0] + r, self.center[1] + r)


@dataclass(frozen=True)
class Box:
    center: tuple[float, float]
    half_size: tuple[float, float]

    def sdf(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        qx = (x - self.center[0]).abs() - self.half_size[0]
        qy = (y - self.center[1]).abs() - self.half_size[1]
        outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
        return outside + torch.maximum(qx, qy).clamp_max(0)

    def bounds(self) -> tuple[float, float, float, float]:
        (cx, cy), (hx, hy) = self.center, self.half_size
        return (cx - hx, cy - hy, cx + hx, cy + hy)


@dataclass(frozen=True)
class Polygon:
    """A convex polygon; d = max over edges of the signed distance to the edge's line."""

    vertices: tuple[tuple[float, float], ...]

    def sdf(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = None
        n = len(self.vertices)
        # Orientation-independent: the outward normal points away from the centroid.
        cx = sum(v[0] for v in self.vertices) / n
        cy = sum(v[1] for v in self.vertices) / n
        for i in range(n):
            (x0, y0), (x1, y1) = self.vertices[i], self.vertices[(i + 1) % n]
            nx, ny = y1 - y0, -(x1 - x0)
            norm = math.hypot(nx, ny)
            nx, ny = nx / norm, ny / norm
            if nx * (cx - x0) + ny * (cy - y0) > 0:
                nx, ny = -nx, -ny
            e = (x - x0) * nx + (y - y0) * ny
            d = e if d is None else torch.maximum(d, e)
        return d

    def bounds(self) -> tuple[float, float, float, float]:
        xs = [v[0] for v in self.vertices]
        ys = [v[1] for v in self.vertices]
        return (min(xs), min(ys), max(xs), max(ys))


def mirror_shape(shape):
    """The same shape reflected through x = 0 (for building symmetric left/right parts)."""
    if isinstance(shape, Ellipse):
        return Ellipse((-shape.center[0], shape.center[1]), shape.radii, -shape.angle)
    if isinstance(shape, Box):
        return Box((-shape.center[0], shape.center[1]), shape.half_size)
    return Polygon(tuple((-x, y) for x, y in reversed(shape.vertices)))


# --------------------------------------------------------------------------------------------
# Deformation: smooth shape changes of the parts, u = v + sum_i s_i * phi_i(v).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bump:
    """One basis field phi(v) with a Gaussian envelope g(v) = exp(-|v - c|^2 / (2 sigma^2)).

    kind "scale": phi = amount * (v - c) * g(v), per axis (a local dilation of part sizes);
    kind "shift": phi = amount * g(v) (a local displacement of part positions).
    A positive coefficient moves canonical points away from the pixel, so the part looks smaller.
    """

    kind: str
    center: tuple[float, float]
    sigma: float
    amount: tuple[float, float]

    def field(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dx, dy = x - self.center[0], y - self.center[1]
        g = torch.exp((dx * dx + dy * dy) * (-0.5 / self.sigma**2))
        ax, ay = self.amount
        if self.kind == "scale":
            return (dx * g * ax if ax else None), (dy * g * ay if ay else None)
        return (g * ax if ax else None), (g * ay if ay else None)


@dataclass(frozen=True)
class Category:
    """One synthetic object category: parts, keypoints and the ways its shape may vary.

    `parts` is a list of (class_id, shape) painted in order. `keypoints` are canonical points.
    `shape_modes[i]` is a tuple of `Bump`s moved together by structure parameter i (in [-1, 1]).
    `detail` names the texture details the renderer draws for this category.
    """

    name: str
    class_names: tuple[str, ...]
    parts: tuple[tuple[int, object], ...]
    keypoint_names: tuple[str, ...]
    keypoints: tuple[tuple[float, float], ...]
    shape_modes: tuple[tuple[Bump, ...], ...]
    base_colors: dict = field(default_factory=dict)  # class -> candidate RGBs, or (class, factor)
    color_jitter: dict = field(default_factory=dict)  # class name -> uniform jitter per channel
    details: tuple = ()  # shapes drawn inside parts (irises, inner ears); labels unchanged
    detail_sources: tuple = ()  # per detail: "detail" (the texture's detail colour) or an RGB
    pattern_classes: tuple[str, ...] = ()  # classes that carry the surface stripe pattern
    pattern_amplitude: float = 0.2  # largest darkening of the stripes
    light_center: tuple[float, float] = (0.0, 0.0)
    light_radius: float = 0.8

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def num_shape_params(self) -> int:
        return len(self.shape_modes)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Keypoint index map under a horizontal mirror: kp_mirrored = mirror_x(kp)[perm]."""
        return _swap_left_right(self.keypoint_names)

    @property
    def class_flip_permutation(self) -> tuple[int, ...]:
        """Class id map under a horizontal mirror: labels_mirrored = perm[mirror_x(labels)]."""
        return _swap_left_right(self.class_names)

    def deform(self, x: torch.Tensor, y: torch.Tensor, shape_params: torch.Tensor):
        """u = v + sum_i s_i phi_i(v): planar v (B, P) each, shape_params (B, M) -> planar u."""
        ux, uy = x.clone(), y.clone()
        for i, mode in enumerate(self.shape_modes):
            s = shape_params[:, i, None]
            for bump in mode:
                fx, fy = bump.field(x, y)
                if fx is not None:
                    ux.addcmul_(s, fx)
                if fy is not None:
                    uy.addcmul_(s, fy)
        return ux, uy

    def signed_distances(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Signed distance of every part (in paint order) at canonical points (x, y)."""
        return [shape.sdf(x, y) for _, shape in self.parts]

    def labels_at(self, u) -> "np.ndarray":
        """Template class id at canonical points u (..., 2): the ground-truth labelling.

        Accepts numpy or torch; NaN points are background. This is the same rule the renderer
        uses, so `labels_at(batch.coords) == batch.labels` wherever the pixel is foreground.
        """
        u_t = torch.as_tensor(np.asarray(u, dtype=np.float32))
        labels = torch.zeros(u_t.shape[:-1], dtype=torch.int64)
        for (class_id, _), d in zip(self.parts, self.signed_distances(u_t[..., 0], u_t[..., 1])):
            labels[d < 0] = class_id
        return labels.numpy()


def _swap_left_right(names) -> tuple[int, ...]:
    index = {n: i for i, n in enumerate(names)}
    perm = []
    for n in names:
        if n.startswith("left_"):
            perm.append(index["right_" + n[5:]])
        elif n.startswith("right_"):
            perm.append(index["left_" + n[6:]])
        else:
            perm.append(index[n])
    return tuple(perm)


def _symmetric(name: str, shape) -> list[tuple[str, object]]:
    """A left part (canonical x < 0, the image's left in the unmirrored pose) and its mirror."""
    return [("left_" + name, shape), ("right_" + name, mirror_shape(shape))]


def _pair(name: str, point: tuple[float, float]) -> list[tuple[str, tuple[float, float]]]:
    return [("left_" + name, point), ("right_" + name, (-point[0], point[1]))]


def _build(name, class_names, named_parts, named_keypoints, shape_modes, **kw) -> Category:
    ids = {n: i for i, n in enumerate(class_names)}
    parts = tuple((ids[n], s) for n, s in named_parts)
    for _, s in parts:  # a template must stay inside the canonical square
        x0, y0, x1, y1 = s.bounds()
        if min(x0, y0) < -1 or max(x1, y1) > 1:
            raise ValueError(f"{name}: part {s} leaves the canonical square [-1, 1]^2")
    return Category(
        name=name,
        class_names=tuple(class_names),
        parts=parts,
        keypoint_names=tuple(n for n, _ in named_keypoints),
        keypoints=tuple(p for _, p in named_keypoints),
        shape_modes=tuple(tuple(m) for m in shape_modes),
        **kw,
    )


def _mode_pair(kind, center, sigma, amount):
    """A bump on a left part and its mirror image on the right part (one shape mode)."""
    mirrored = (-amount[0], amount[1]) if kind == "shift" else amount
    return (Bump(kind, center, sigma, amount), Bump(kind, (-center[0], center[1]), sigma, mirrored))


# --------------------------------------------------------------------------------------------
# faces: a frontal human head (CelebAMask-HQ-like classes).
# --------------------------------------------------------------------------------------------

FACE_CLASSES = (
    "background", "skin", "hair", "neck", "left_ear", "right_ear",
    "left_brow", "right_brow", "left_eye", "right_eye", "nose", "mouth",
)  # fmt: skip

FACES = _build(
    "faces",
    FACE_CLASSES,
    [
        ("neck", Box((0.0, 0.78), (0.24, 0.2))),
        ("hair", Ellipse((0.0, -0.22), (0.74, 0.7))),
        *_symmetric("ear", Ellipse((-0.64, 0.02), (0.12, 0.19), 0.15)),
        ("skin", Ellipse((0.0, 0.04), (0.56, 0.72))),
        *_symmetric("brow", Ellipse((-0.25, -0.24), (0.15, 0.035), -0.12)),
        *_symmetric("eye", Ellipse((-0.24, -0.09), (0.12, 0.058))),
        ("nose", Ellipse((0.0, 0.14), (0.075, 0.16))),
        ("mouth", Ellipse((0.0, 0.44), (0.2, 0.07))),
    ],
    [
        *_pair("eye_outer", (-0.36, -0.09)),
        *_pair("eye_inner", (-0.12, -0.09)),
        *_pair("brow", (-0.25, -0.24)),
        ("nose_tip", (0.0, 0.28)),
        *_pair("mouth_corner", (-0.2, 0.44)),
        ("upper_lip", (0.0, 0.37)),
        ("lower_lip", (0.0, 0.51)),
        ("chin", (0.0, 0.76)),
        *_pair("ear", (-0.74, 0.02)),
        ("hairline", (0.0, -0.68)),
    ],
    [
        [Bump("scale", (0.0, 0.1), 0.6, (0.16, 0.0))],  # face width
        [Bump("scale", (0.0, 0.05), 0.6, (0.0, 0.1))],  # face length
        [Bump("scale", (0.0, 0.62), 0.3, (0.18, 0.0))],  # jaw width
        list(_mode_pair("scale", (-0.24, -0.09), 0.12, (0.22, 0.22))),  # eye size
        list(_mode_pair("shift", (-0.24, -0.1), 0.16, (0.04, 0.0))),  # eye spacing
        list(_mode_pair("shift", (-0.25, -0.24), 0.12, (0.0, 0.04))),  # brow height
        [Bump("scale", (0.0, 0.44), 0.17, (0.25, 0.1))],  # mouth size
        [Bump("shift", (0.0, 0.42), 0.2, (0.0, 0.05))],  # mouth height
        [Bump("scale", (0.0, 0.15), 0.17, (0.1, 0.22))],  # nose size
        [Bump("scale", (0.0, -0.45), 0.45, (0.1, 0.1))],  # hair volume
        list(_mode_pair("scale", (-0.64, 0.02), 0.14, (0.2, 0.2))),  # ear size
        [Bump("shift", (-0.24, -0.12), 0.14, (0.0, 0.025))],  # left/right asymmetry
    ],
    base_colors={
        "skin": [(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.71, 0.50, 0.36), (0.45, 0.30, 0.21)],
        "hair": [(0.08, 0.06, 0.05), (0.35, 0.22, 0.12), (0.82, 0.68, 0.40), (0.62, 0.25, 0.10), (0.72, 0.72, 0.72)],
        "neck": ("skin", 0.85), "left_ear": ("skin", 0.93), "right_ear": ("skin", 0.93),
        "nose": ("skin", 0.88), "left_brow": ("hair", 0.8), "right_brow": ("hair", 0.8),
        "left_eye": [(0.95, 0.95, 0.93)], "right_eye": ("left_eye", 1.0),
        "mouth": [(0.75, 0.30, 0.32), (0.62, 0.25, 0.28), (0.85, 0.45, 0.45)],
        "detail": [(0.35, 0.22, 0.12), (0.25, 0.45, 0.65), (0.3, 0.5, 0.3), (0.15, 0.1, 0.08)],  # iris
    },  # fmt: skip
    color_jitter={"skin": 0.06, "hair": 0.08, "left_eye": 0.03, "mouth": 0.06},
    details=(
        *(Ellipse((x, -0.09), (0.05, 0.05)) for x in (-0.24, 0.24)),  # irises
        *(Ellipse((x, -0.09), (0.021, 0.021)) for x in (-0.24, 0.24)),  # pupils
        Ellipse((0.0, 0.44), (0.17, 0.009)),  # lip line
    ),
    detail_sources=("detail", "detail", (0.04, 0.03, 0.03), (0.04, 0.03, 0.03), (0.3, 0.08, 0.1)),
    pattern_classes=("hair",),
    pattern_amplitude=0.35,
    light_center=(0.0, 0.0),
    light_radius=0.85,
)


# --------------------------------------------------------------------------------------------
# cats: a frontal cat head; the pointed ears stick out of the head outline (another topology).
# --------------------------------------------------------------------------------------------

CAT_CLASSES = (
    "background", "head", "left_ear", "right_ear", "left_eye", "right_eye",
    "nose", "muzzle", "mouth",
)  # fmt: skip

CATS = _build(
    "cats",
    CAT_CLASSES,
    [
        *_symmetric("ear", Polygon(((-0.72, -0.22), (-0.58, -0.9), (-0.16, -0.5)))),
        ("head", Ellipse((0.0, 0.1), (0.74, 0.6))),
        ("muzzle", Ellipse((-0.11, 0.36), (0.14, 0.1))),
        ("muzzle", Ellipse((0.11, 0.36), (0.14, 0.1))),
        ("mouth", Ellipse((0.0, 0.5), (0.08, 0.05))),
        *_symmetric("eye", Ellipse((-0.3, -0.03), (0.15, 0.1), -0.2)),
        ("nose", Polygon(((-0.08, 0.2), (0.08, 0.2), (0.0, 0.29)))),
    ],
    [
        *_pair("ear_tip", (-0.58, -0.88)),
        *_pair("ear_base", (-0.2, -0.5)),
        *_pair("eye_outer", (-0.44, -0.06)),
        *_pair("eye_inner", (-0.16, 0.0)),
        ("nose", (0.0, 0.27)),
        ("mouth", (0.0, 0.52)),
        ("chin", (0.0, 0.69)),
        *_pair("cheek", (-0.73, 0.15)),
    ],
    [
        [Bump("scale", (0.0, 0.1), 0.6, (0.14, 0.0))],  # head width
        [Bump("scale", (0.0, 0.1), 0.6, (0.0, 0.1))],  # head height
        list(_mode_pair("scale", (-0.5, -0.6), 0.22, (0.22, 0.22))),  # ear size
        list(_mode_pair("shift", (-0.55, -0.75), 0.2, (-0.06, 0.0))),  # ear spread
        list(_mode_pair("scale", (-0.3, -0.03), 0.13, (0.22, 0.22))),  # eye size
        [Bump("scale", (0.0, 0.38), 0.2, (0.2, 0.2))],  # muzzle size
        [Bump("shift", (0.0, 0.3), 0.22, (0.0, 0.05))],  # muzzle height
        [Bump("scale", (0.0, 0.6), 0.3, (0.15, 0.0))],  # chin width
        [Bump("shift", (-0.55, -0.7), 0.18, (0.0, 0.05))],  # left ear tilt (asymmetry)
    ],
    base_colors={
        "head": [(0.92, 0.55, 0.22), (0.30, 0.28, 0.27), (0.85, 0.83, 0.78), (0.55, 0.50, 0.45), (0.12, 0.11, 0.11)],
        "left_ear": ("head", 0.95), "right_ear": ("head", 0.95),
        "left_eye": [(0.55, 0.75, 0.25), (0.85, 0.65, 0.15), (0.35, 0.60, 0.80)],
        "right_eye": ("left_eye", 1.0),
        "nose": [(0.85, 0.45, 0.50), (0.25, 0.18, 0.18)],
        "muzzle": [(0.97, 0.95, 0.92), (0.80, 0.75, 0.70)],
        "mouth": [(0.45, 0.20, 0.22)],
        "detail": [(0.95, 0.7, 0.72), (0.85, 0.6, 0.6)],  # inner ear
    },  # fmt: skip
    color_jitter={"head": 0.08, "left_eye": 0.06, "nose": 0.05, "muzzle": 0.04, "mouth": 0.04},
    details=(
        *(mirror_shape(p) if x else p
          for x in (0, 1) for p in [Polygon(((-0.62, -0.45), (-0.57, -0.8), (-0.3, -0.54)))]),
        *(Ellipse((x, -0.03), (0.028, 0.085)) for x in (-0.3, 0.3)),  # slit pupils
    ),
    detail_sources=("detail", "detail", (0.03, 0.03, 0.03), (0.03, 0.03, 0.03)),
    pattern_classes=("head", "left_ear", "right_ear"),
    pattern_amplitude=0.55,
    light_center=(0.0, 0.1),
    light_radius=0.85,
)


TEMPLATES = {c.name: c for c in (FACES, CATS)}
