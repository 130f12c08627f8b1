"""A face-parsing map from the 68 landmarks, in CelebAMask-HQ part ids (CoCosNet's face input).

Polygons through the landmarks give skin (the jaw line closed by a forehead arc), brows, eyes,
nose, upper and lower lip and the inner mouth. Hair, ears, neck, clothes, hats and glasses have
no landmarks: they stay background (0). Left and right follow the image (l_eye is the eye on
the image's left, landmarks 36-41), as demos/ maps the synthetic faces' parts.
"""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon as fill_polygon

from .detect import Face

# Copied from cocosnet.encodings.FACE_PARTS
FACE_PARTS = ("background", "hair", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip",
              "mouth", "l_lip", "neck", "cloth", "hat", "eye_g", "ear_r", "neck_l")  # id -> name (19 ids)

# A colour per part id for index PNGs (0 background black).
FACE_PALETTE = np.array([(0, 0, 0), (120, 60, 20), (235, 190, 160), (90, 50, 30), (60, 30, 90), (40, 120, 220),
                         (220, 120, 40), (200, 160, 110), (160, 200, 110), (250, 140, 130), (200, 40, 70),
                         (90, 10, 30), (230, 80, 110), (180, 140, 120), (70, 110, 70), (110, 110, 160),
                         (230, 230, 60), (240, 200, 240), (140, 230, 230)], np.uint8)

FOREHEAD = 0.6  # forehead height above the brows, in eye-to-mouth distances
BROW_THICKNESS = 0.12  # in eye-to-eye distances, below the brow landmarks (they trace its upper edge)
BRIDGE_WIDTH = 0.3  # nose bridge width, in nostril widths (landmarks 31-35)
ALA_MARGIN = 0.15  # how far the nose wings reach past landmarks 31 and 35, in nostril widths


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.hypot(*v), 1e-9)


def part_polygons(landmarks: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(part name, polygon (N, 2) of (x, y)) in paint order: later parts cover earlier ones."""
    lm = np.asarray(landmarks, np.float64)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, mouth = (eye_l + eye_r) / 2, (lm[48] + lm[54]) / 2
    up = _unit(eye_avg - mouth)
    across = _unit(eye_r - eye_l)
    eye_to_mouth = np.hypot(*(eye_avg - mouth))
    # Skin: the jaw line (0-16) closed by a half-ellipse over the forehead, from point 16 back to 0.
    center = (lm[0] + lm[16]) / 2
    half_width = np.hypot(*(lm[16] - lm[0])) / 2
    along_jaw = _unit(lm[16] - lm[0])
    top = ((lm[17:27] - center) @ up).max() + FOREHEAD * eye_to_mouth
    t = np.linspace(0, np.pi, 33)[1:-1, None]
    forehead = center + np.cos(t) * half_width * along_jaw + np.sin(t) * top * up
    skin = np.concatenate([lm[0:17], forehead])
    thickness = BROW_THICKNESS * np.hypot(*(eye_r - eye_l))

    def brow(points):
        return np.concatenate([points + 0.25 * thickness * up, (points - thickness * up)[::-1]])

    nostrils = np.hypot(*(lm[35] - lm[31]))
    nose = np.stack([lm[27] - across * BRIDGE_WIDTH * nostrils / 2, lm[31] - across * ALA_MARGIN * nostrils,
                     *lm[32:35], lm[35] + across * ALA_MARGIN * nostrils,
                     lm[27] + across * BRIDGE_WIDTH * nostrils / 2])
    upper_lip = np.concatenate([lm[48:55], lm[60:65][::-1]])
    lower_lip = np.concatenate([lm[54:60], lm[48:49], lm[60:61], lm[64:68][::-1]])
    return [("skin", skin), ("nose", nose), ("l_brow", brow(lm[17:22])), ("r_brow", brow(lm[22:27])),
            ("l_eye", lm[36:42]), ("r_eye", lm[42:48]), ("u_lip", upper_lip), ("l_lip", lower_lip),
            ("mouth", lm[60:68])]


def parsing_from_landmarks(face, shape) -> np.ndarray:
    """A CelebAMask-HQ parsing map (uint8 (H, W), ids of `FACE_PARTS`) drawn from 68 landmarks.

    Args:
        face: a `Face` with landmarks (from `detect`, or `Aligned.face` for a map in the crop),
            or a (68, 2) array of (x, y) pixel indices.
        shape: (H, W) of the map (a longer shape, e.g. an image's, uses its first two numbers).
    Returns:
        uint8 (H, W): skin, brows, eyes, nose, upper / lower lip and inner mouth; hair, ears, neck and
        everything else 0 (background): landmarks do not say where they are.
    """
    landmarks = face.landmarks if isinstance(face, Face) else face
    if landmarks is None:
        raise ValueError("this face has no landmarks (built from eye and mouth points); use one from faces.detect")
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be 68 finite (x, y) points in iBUG 300-W order, got shape {landmarks.shape}")
    shape = tuple(int(v) for v in tuple(shape)[:2])
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with positive sides, got {shape}")
    labels = np.zeros(shape, np.uint8)
    for name, points in part_polygons(landmarks):
        rows, cols = fill_polygon(points[:, 1], points[:, 0], shape)
        labels[rows, cols] = FACE_PARTS.index(name)
    return labels
