"""The crops the face models were trained on, each defined by the FFHQ / CelebA-HQ square.

Coordinates are pixel indices (x, y): the centre of pixel (i, j) is (i, j); a crop of side S
spans [-0.5, S - 0.5]^2. "Unit" coordinates are fractions of the crop's side, (0, 0) its top-left
corner and (1, 1) its bottom-right corner.

The recipe (Karras et al., CelebA-HQ, reused for FFHQ) turns three points into an oriented
square: with `eye_to_eye` = eye_right - eye_left, `eye_to_mouth` = mouth - (eye_left + eye_right)/2
and rot90(dx, dy) = (-dy, dx) (a quarter turn in image coordinates, y down),
    x = unit(eye_to_eye - rot90(eye_to_mouth)) * max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)
    y = rot90(x),    centre = eye_avg + 0.1 eye_to_mouth,
and the square's corners are centre -/+ x -/+ y (half-side |x|). The recipe commutes with
rotation, scaling and shifting the photo, so a face that is a similarity image of another lands
exactly where that one does. A `Frame` says where this square lies in the model's crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rot90(v: np.ndarray) -> np.ndarray:
    """(dx, dy) -> (-dy, dx): a quarter turn that takes the eye line's direction towards the mouth."""
    return np.array([-v[1], v[0]], np.float64)


def recipe_square(eye_left, eye_right, mouth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CelebA-HQ / FFHQ square from eye and mouth centres: (centre, x, y) half-side vectors."""
    eye_left, eye_right, mouth = (np.asarray(p, np.float64) for p in (eye_left, eye_right, mouth))
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth)
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError("the eye and mouth points coincide: give three distinct, finite points")
    x = x / norm * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    return eye_avg + 0.1 * eye_to_mouth, x, rot90(x)


@dataclass(frozen=True)
class Frame:
    """Where the recipe square lies in a model's crop: centre (unit coordinates) and half-side."""

    name: str
    center: tuple[float, float]
    half_side: float
    description: str

    def side_in_photo(self, eye_left, eye_right, mouth) -> float:
        """The crop's side in photo pixels (a crop this many pixels wide neither shrinks nor enlarges
        the face)."""
        return float(np.hypot(*recipe_square(eye_left, eye_right, mouth)[1]) / self.half_side)

    def crop_to_photo(self, eye_left, eye_right, mouth, size: int) -> np.ndarray:
        """3x3 matrix: crop pixel indices (side `size`) -> photo pixel indices."""
        c, x, y = recipe_square(eye_left, eye_right, mouth)
        # unit = (q + 0.5) / size; photo = c + (x (unit_x - cx) + y (unit_y - cy)) / half_side
        a = np.column_stack([x, y]) / (self.half_side * size)
        offset = c - a @ (np.array(self.center) * size - 0.5)
        return np.array([[*a[0], offset[0]], [*a[1], offset[1]], [0.0, 0.0, 1.0]])


# The synthetic faces' canonical eye and mouth centres in unit coordinates of the renderer's image
# at the identity pose (canonical u -> (u + 1) / 2): the means of synthetic/templates.py FACES
# keypoints eye_outer/eye_inner (-+0.36, -+0.12 at y -0.09) and of the mouth corners (-+0.2, 0.44).
# tests/test_faces.py checks them against synthetic.category("faces").keypoints.
SYNTHETIC_POINTS = ((0.38, 0.455), (0.62, 0.455), (0.5, 0.72))


def _frame_from_points(name: str, points, description: str) -> Frame:
    c, x, _ = recipe_square(*points)
    return Frame(name, (float(c[0]), float(c[1])), float(np.hypot(*x)), description)


_FFHQ = Frame("ffhq", (0.5, 0.5), 0.5, "FFHQ / CelebA-HQ: the recipe square is the whole crop")
FRAMES = {
    "ffhq": _FFHQ,
    "celebahq": Frame("celebahq", _FFHQ.center, _FFHQ.half_side, _FFHQ.description),
    "celeba": Frame("celeba", (0.5, 0.5), 0.3, "a loose crop: the recipe square covers the middle 60 % "
                    "(in-the-wild CelebA, GANgealing's celeba model; congealing does the rest)"),
    "synthetic": _frame_from_points("synthetic", SYNTHETIC_POINTS, "the bundled synthetic faces at the "
                                    "renderer's identity pose"),
}


def get_frame(name: str) -> Frame:
    if name not in FRAMES:
        raise ValueError(f"unknown face frame {name!r}; choose one of {', '.join(FRAMES)}")
    return FRAMES[name]
