"""The authors' input encodings for their CelebA-HQ edge and DeepFashion pose models (section 4, "Datasets").

CoCosNet's released `celebahqedge` and `deepfashion` models do not read one-hot masks but stacks of
hand-made channels (facts in ../shared/fixtures/cocosnet-official/README.md, section 7):

* `face_edge_channels(labels, photo=None)` -> (15, H, W) from a CelebAMask-HQ face-parsing map:
  channel 0 all edges (part boundaries, plus Canny edges of the photo outside the inner face
  parts), channels 1-13 one distance map per part boundary (FACE_DISTANCE_PARTS), channel 14 the
  part boundaries alone.
* `pose_channels(keypoints, size)` -> (20, H, W) from 18 OpenPose (COCO-18) keypoints: channels 0-2
  the coloured skeleton (circles on the joints, translucent ellipses on the limbs), channels 3-19
  one distance map per limb (POSE_LIMBS).

Each distance map is uint8(clip(d / 3, 0, 255)) / 255 with d the L1 (city-block) distance to the
nearest boundary or limb pixel, so it is 0 on the drawing and grows away from it; a part or limb
that is absent gives a channel of ones. Values are multiples of 1/255 as the authors' loader emits.
`resize_channels` resizes a stack the way their loader does (nearest for drawings, bilinear for
distance maps). Pure numpy / scipy / scikit-image: no OpenCV. This module builds the arrays;
keypoints are read by openpose.py (`parse_keypoints`: arrays, lists, OpenPose JSON) and drawn with
raster.py, which follows the conventions of the authors' renderer (integer ellipse polygons, 0.4 /
0.6 blending); on the fixture the result agrees with their channels to the numbers that
tests/test_cocosnet_inputs.py asserts.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from .openpose import check_canvas, parse_keypoints
from .raster import blend, fill_convex, fill_disc, limb_polygon

# ------------------------------------------------------------------ face parsing (CelebAMask-HQ)
FACE_PARTS = ("background", "hair", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip",
              "mouth", "l_lip", "neck", "cloth", "hat", "eye_g", "ear_r", "neck_l")  # id -> name (19 ids)
# channels 1..13: the distance maps of these parts' boundaries, in this order
FACE_DISTANCE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip", "mouth",
                       "l_lip", "eye_g", "hair")
FACE_EDGE_CHANNELS = 1 + len(FACE_DISTANCE_PARTS) + 1  # 15

# ------------------------------------------------------------------ body pose (OpenPose COCO-18)
# the 17 limbs (pairs of keypoint indices): one distance channel each, drawn in this order
POSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
              (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# colour of keypoint / limb i: the hue circle in 18 steps (as RGB in the rendered channels 0-2)
POSE_COLORS = np.array([(0, 0, 255), (0, 85, 255), (0, 170, 255), (0, 255, 255), (0, 255, 170), (0, 255, 85),
                        (0, 255, 0), (85, 255, 0), (170, 255, 0), (255, 255, 0), (255, 170, 0), (255, 85, 0),
                        (255, 0, 0), (255, 0, 85), (255, 0, 170), (255, 0, 255), (170, 0, 255), (85, 0, 255)], np.uint8)
POSE_CHANNELS = 3 + len(POSE_LIMBS)  # 20
JOINT_RADIUS = 4  # pixels, filled circle on each keypoint
LIMB_HALF_WIDTH = 4  # pixels, minor semi-axis of each limb's ellipse

# Which builder reads a "channels" model's input, by its channel count (the authors' two stacks).
CHANNEL_ENCODINGS = {FACE_EDGE_CHANNELS: "face_edges", POSE_CHANNELS: "pose"}


def channel_encoding(input_kind: str, input_channels: int) -> str | None:
    """"face_edges", "pose" or None: the builder a model with this input reads. Only "channels"
    models with the authors' channel counts (15: CelebA-HQ edges, 20: DeepFashion pose) have one."""
    return CHANNEL_ENCODINGS.get(int(input_channels)) if input_kind == "channels" else None


# ------------------------------------------------------------------ shared pieces
def distance_map(drawing: np.ndarray) -> np.ndarray:
    """bool (H, W) drawing -> uint8 (H, W): clip(L1 distance to the drawing / 3, 0, 255), truncated;
    255 everywhere when nothing is drawn."""
    if not drawing.any():
        return np.full(drawing.shape, 255, np.uint8)
    d = ndimage.distance_transform_cdt(~drawing, metric="taxicab").astype(np.float32)
    return np.clip(d / np.float32(3), 0, 255).astype(np.uint8)


def part_boundary(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) -> bool (H, W): the pixels on both sides of every change of `mask` between
    4-neighbours (a boundary two pixels thick)."""
    out = np.zeros(mask.shape, bool)
    dx = mask[:, 1:] != mask[:, :-1]
    dy = mask[1:, :] != mask[:-1, :]
    out[:, 1:] |= dx
    out[:, :-1] |= dx
    out[1:, :] |= dy
    out[:-1, :] |= dy
    return out


def resize_channels(channels: np.ndarray, size: tuple[int, int], nearest: tuple[int, ...]) -> np.ndarray:
    """float32 (C, H, W) in [0, 1] (multiples of 1/255) -> (C, h, w) for size (h, w): the channels
    in `nearest` (drawings) resized nearest, the others (distance maps) bilinear, each through an
    8-bit image as the authors' loader does."""
    h, w = int(size[0]), int(size[1])
    if channels.shape[1:] == (h, w):
        return channels
    out = np.empty((channels.shape[0], h, w), np.float32)
    for c, channel in enumerate(channels):
        im = Image.fromarray(np.round(channel * 255).astype(np.uint8))
        im = im.resize((w, h), Image.NEAREST if c in nearest else Image.BILINEAR)
        out[c] = np.asarray(im, np.float32) / 255
    return out


# ------------------------------------------------------------------ CelebA-HQ edges
def face_edge_channels(labels, photo=None) -> np.ndarray:
    """The authors' 15-channel CelebA-HQ edge input from a face-parsing map.

    labels: int (H, W) with the 19 CelebAMask-HQ ids of FACE_PARTS (0 background, 1 hair, 2 skin,
        ..., 16 eye_g, 18 neck_l). photo (optional): the face photo (PIL image or uint8 (h, w[, 3])),
        resized bilinear to (W, H); its Canny edges (scikit-image, sigma 1) outside the inner face
        parts (every part of FACE_DISTANCE_PARTS but hair) join channel 0. Without a photo channel 0
        equals channel 14.
    Returns float32 (15, H, W): [all edges, 13 distance maps of FACE_DISTANCE_PARTS, part edges].
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("face labels must be an integer array [H, W] of CelebAMask-HQ part ids 0..18, got "
                         f"{labels.dtype} {labels.shape}; "
                         "convert a colour map to ids first")
    if min(labels.shape) < 8:
        raise ValueError(f"the face label map is too small ({labels.shape[1]}x{labels.shape[0]}); give at "
                         "least 8x8 pixels")
    bad = np.unique(labels[(labels < 0) | (labels >= len(FACE_PARTS))])
    if bad.size:
        raise ValueError(f"unknown face part ids {bad[:10].tolist()}: use the CelebAMask-HQ ids 0..18 "
                         f"({', '.join(f'{i} {n}' for i, n in enumerate(FACE_PARTS))})")
    edges = np.zeros(labels.shape, bool)
    inner = np.zeros(labels.shape, bool)  # the inner face: where Canny edges are not used
    channels = np.empty((FACE_EDGE_CHANNELS, *labels.shape), np.float32)
    for c, part in enumerate(FACE_DISTANCE_PARTS, start=1):
        mask = labels == FACE_PARTS.index(part)
        boundary = part_boundary(mask) if mask.any() else np.zeros(labels.shape, bool)
        if part != "hair":
            inner |= mask
        edges |= boundary
        channels[c] = distance_map(boundary) / np.float32(255)
    all_edges = edges.copy()
    if photo is not None:
        from skimage import feature

        if isinstance(photo, np.ndarray):
            if photo.dtype != np.uint8 or photo.ndim not in (2, 3):
                raise ValueError("the face photo must be a uint8 array [H, W] or [H, W, 3] (or a PIL image), got "
                                 f"{photo.dtype} {photo.shape}")
            photo = Image.fromarray(photo)
        if not isinstance(photo, Image.Image):
            raise ValueError(f"the face photo must be a PIL image or a uint8 array, got {type(photo).__name__}")
        grey = np.asarray(photo.convert("RGB").resize(labels.shape[::-1], Image.BILINEAR).convert("L"))
        all_edges |= feature.canny(grey) & ~inner
    channels[0] = all_edges
    channels[-1] = edges
    return channels


# ------------------------------------------------------------------ DeepFashion pose
def render_pose(keypoints, size: tuple[int, int]) -> tuple[np.ndarray, list]:
    """(uint8 (H, W, 3) RGB skeleton, [bool (H, W) or None per limb]) for parsed keypoints (18, 2)."""
    xy = parse_keypoints(keypoints)
    h, w = check_canvas(xy, size)
    present = np.isfinite(xy).all(1)
    canvas = np.zeros((h, w, 3), np.uint8)
    for i in np.flatnonzero(present):
        fill_disc(canvas, int(xy[i, 0]), int(xy[i, 1]), JOINT_RADIUS, POSE_COLORS[i])
    limbs = []
    for i, (a, b) in enumerate(POSE_LIMBS):
        if not (present[a] and present[b]):
            limbs.append(None)
            continue
        pixels = fill_convex((h, w), limb_polygon(xy[a], xy[b], LIMB_HALF_WIDTH))
        blend(canvas, pixels, POSE_COLORS[i])
        limbs.append(pixels)
    return canvas, limbs


def pose_channels(keypoints, size: tuple[int, int]) -> np.ndarray:
    """The authors' 20-channel DeepFashion pose input.

    keypoints: 18 OpenPose COCO-18 points (openpose.POSE_KEYPOINTS) in pixels of an image of `size` (H, W),
        in any form `openpose.parse_keypoints` reads; missing points (and their limbs) are left out.
    Returns float32 (20, H, W): the RGB skeleton (channels 0-2) and the distance maps of the 17
    POSE_LIMBS (channels 3-19; ones for a limb with a missing end), all in [0, 1].
    """
    canvas, limbs = render_pose(keypoints, size)
    channels = np.empty((POSE_CHANNELS, int(size[0]), int(size[1])), np.float32)
    channels[:3] = canvas.transpose(2, 0, 1) / np.float32(255)
    for c, pixels in enumerate(limbs, start=3):
        drawn = pixels if pixels is not None else np.zeros(canvas.shape[:2], bool)
        channels[c] = distance_map(drawn) / np.float32(255)
    return channels


__all__ = ["CHANNEL_ENCODINGS", "FACE_DISTANCE_PARTS", "FACE_EDGE_CHANNELS", "FACE_PARTS", "JOINT_RADIUS",
           "LIMB_HALF_WIDTH", "POSE_CHANNELS", "POSE_COLORS", "POSE_LIMBS", "channel_encoding", "distance_map",
           "face_edge_channels", "part_boundary", "pose_channels", "render_pose", "resize_channels"]
