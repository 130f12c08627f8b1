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
distance maps). Pure numpy / scipy / scikit-image: no OpenCV. The skeleton rasteriser follows the
conventions of the authors' renderer (integer ellipse polygons, 0.4 / 0.6 blending); on the
fixture it agrees with their channels to the numbers that tests/test_cocosnet_inputs.py asserts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

# ------------------------------------------------------------------ face parsing (CelebAMask-HQ)
FACE_PARTS = ("background", "hair", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip",
              "mouth", "l_lip", "neck", "cloth", "hat", "eye_g", "ear_r", "neck_l")  # id -> name (19 ids)
# channels 1..13: the distance maps of these parts' boundaries, in this order
FACE_DISTANCE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip", "mouth", "l_lip", "eye_g", "hair")
FACE_EDGE_CHANNELS = 1 + len(FACE_DISTANCE_PARTS) + 1  # 15

# ------------------------------------------------------------------ body pose (OpenPose COCO-18)
POSE_KEYPOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
                  "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# the 17 limbs (pairs of keypoint indices): one distance channel each, drawn in this order
POSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
              (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# colour of keypoint / limb i: the hue circle in 18 steps (as RGB in the rendered channels 0-2)
POSE_COLORS = np.array([(0, 0, 255), (0, 85, 255), (0, 170, 255), (0, 255, 255), (0, 255, 170), (0, 255, 85), (0, 255, 0),
                        (85, 255, 0), (170, 255, 0), (255, 255, 0), (255, 170, 0), (255, 85, 0), (255, 0, 0), (255, 0, 85),
                        (255, 0, 170), (255, 0, 255), (170, 0, 255), (85, 0, 255)], np.uint8)
POSE_CHANNELS = 3 + len(POSE_LIMBS)  # 20
JOINT_RADIUS = 4  # pixels, filled circle on each keypoint
LIMB_HALF_WIDTH = 4  # pixels, minor semi-axis of each limb's ellipse
# OpenPose BODY_25 -> COCO-18 (BODY_25 adds the mid-hip at 8 and six foot points at 19-24)
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

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
        raise ValueError(f"face labels must be an integer array [H, W] of CelebAMask-HQ part ids 0..18, got {labels.dtype} {labels.shape}; "
                         "convert a colour map to ids first")
    if min(labels.shape) < 8:
        raise ValueError(f"the face label map is too small ({labels.shape[1]}x{labels.shape[0]}); give at least 8x8 pixels")
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
                raise ValueError(f"the face photo must be a uint8 array [H, W] or [H, W, 3] (or a PIL image), got {photo.dtype} {photo.shape}")
            photo = Image.fromarray(photo)
        if not isinstance(photo, Image.Image):
            raise ValueError(f"the face photo must be a PIL image or a uint8 array, got {type(photo).__name__}")
        grey = np.asarray(photo.convert("RGB").resize(labels.shape[::-1], Image.BILINEAR).convert("L"))
        all_edges |= feature.canny(grey) & ~inner
    channels[0] = all_edges
    channels[-1] = edges
    return channels


# ------------------------------------------------------------------ DeepFashion pose
def _read_json(source):
    """JSON text or a path to a JSON file -> the parsed object; anything else as it is."""
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and source.lstrip()[:1] in ("{", "[")):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no keypoints file at {str(source)!r}: give an OpenPose JSON file, its text, or an array [18, 2|3]")
        try:
            source = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{path.name!r} is not a text file: give the keypoints as OpenPose JSON") from None
    if isinstance(source, str):
        try:
            return json.loads(source)
        except json.JSONDecodeError as e:
            raise ValueError(f"the keypoints are not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); give OpenPose JSON "
                             '({"people": [{"pose_keypoints_2d": [x0, y0, c0, ...]}]}) or a list of 18 [x, y] pairs') from None
    return source


def keypoints_and_canvas(source, default_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(parse_keypoints(source), canvas (H, W)): the canvas is `default_size` unless `source` is a
    JSON dict with "canvas_height" and "canvas_width" (our addition to OpenPose's format: the size
    of the image the keypoints were found in)."""
    source = _read_json(source)
    size = tuple(int(v) for v in default_size)
    if isinstance(source, dict) and ("canvas_height" in source or "canvas_width" in source):
        try:
            size = (int(source["canvas_height"]), int(source["canvas_width"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError('give both "canvas_height" and "canvas_width" as whole numbers of pixels (the image the keypoints belong to)') from None
    return parse_keypoints(source), size


def parse_keypoints(keypoints) -> np.ndarray:
    """18 COCO-18 keypoints -> float64 (18, 2) pixel (x, y), NaN where a point is missing.

    Accepts an array / nested list [18, 2] or [18, 3] (x, y, confidence), a flat list of 54 (or,
    from OpenPose BODY_25, 75) numbers, an OpenPose JSON dict ({"people": [{"pose_keypoints_2d":
    [...]}]}, first person) or its text / a path to a .json file. Missing points: negative or NaN
    coordinates, or confidence 0 (OpenPose writes 0, 0, 0).
    """
    keypoints = _read_json(keypoints)
    if isinstance(keypoints, dict):
        people = keypoints.get("people")
        if not isinstance(people, list) or not people or not isinstance(people[0], dict) or "pose_keypoints_2d" not in people[0]:
            raise ValueError('OpenPose JSON needs "people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}] with at least one person')
        keypoints = people[0]["pose_keypoints_2d"]
    try:
        arr = np.asarray(keypoints, np.float64)
    except (TypeError, ValueError):
        raise ValueError("keypoints must be numbers: a list of 18 [x, y] or [x, y, confidence] entries") from None
    if arr.ndim == 1 and arr.size in (54, 75):
        arr = arr.reshape(-1, 3)
    if arr.ndim == 2 and arr.shape == (25, 3):
        arr = arr[list(BODY25_TO_COCO18)]
    if arr.ndim != 2 or arr.shape[0] != len(POSE_KEYPOINTS) or arr.shape[1] not in (2, 3):
        raise ValueError(f"need the 18 OpenPose COCO-18 keypoints ({', '.join(POSE_KEYPOINTS)}) as [18, 2] (x, y) or [18, 3] "
                         f"(x, y, confidence), or 54 / 75 flat numbers; got {f'{arr.size} numbers' if arr.ndim == 1 else f'shape {arr.shape}'}")
    xy = arr[:, :2].copy()
    missing = ~np.isfinite(xy).all(1) | (xy < 0).any(1)
    if arr.shape[1] == 3:
        missing |= ~(arr[:, 2] > 0)
    xy[missing] = np.nan
    return xy


def _fill_disc(canvas: np.ndarray, cx: int, cy: int, radius: int, color) -> None:
    """A filled midpoint circle of integer `radius` around (cx, cy), clipped to the canvas."""
    h, w = canvas.shape[:2]
    dx, dy, err = radius, 0, 0
    while dx >= dy:
        for half, rows in ((dx, (cy - dy, cy + dy)), (dy, (cy - dx, cy + dx))):
            x0, x1 = max(cx - half, 0), min(cx + half, w - 1)
            for row in rows:
                if 0 <= row < h and x0 <= x1:
                    canvas[row, x0 : x1 + 1] = color
        dy += 1
        err += 2 * dy - 1
        if err > 0:
            err -= 2 * dx - 1
            dx -= 1


def _sin_deg(degrees: np.ndarray) -> np.ndarray:
    """sin of whole degrees in float32 (a degree table, as the renderer uses)."""
    return np.sin(np.deg2rad(np.asarray(degrees, np.float64))).astype(np.float32).astype(np.float64)


def limb_polygon(p0, p1, half_width: int = LIMB_HALF_WIDTH) -> np.ndarray:
    """The integer polygon (N, 2) x, y of the ellipse drawn for a limb from p0 to p1 (x, y): centred
    on the truncated midpoint, semi-axes (int(length / 2), half_width), rotated by the truncated
    angle in degrees, sampled every degree, rounded half to even, repeats dropped."""
    (x0, y0), (x1, y1) = p0, p1
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    a = int(math.hypot(x0 - x1, y0 - y1) / 2)
    angle = int(math.degrees(math.atan2(y0 - y1, x0 - x1))) % 360
    cos_r, sin_r = _sin_deg(450 - angle), _sin_deg(angle)
    t = np.arange(0, 361)
    ex, ey = a * _sin_deg(450 - t), half_width * _sin_deg(t)
    pts = np.rint(np.stack([cx + ex * cos_r - ey * sin_r, cy + ex * sin_r + ey * cos_r], 1)).astype(np.int64)
    keep = np.ones(len(pts), bool)
    keep[1:] = (pts[1:] != pts[:-1]).any(1)
    pts = pts[keep]
    return pts if len(pts) > 1 else np.concatenate([pts, [[cx, cy]]])


def fill_convex(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixels of a convex integer polygon: its vertices, and on each row the span
    between its left and right edge (16.16 fixed-point edge walk, ends rounded)."""
    h, w = shape
    out = np.zeros(shape, bool)
    px, py = polygon[:, 0], polygon[:, 1]
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    out[py[inside], px[inside]] = True
    n = len(polygon)
    if n < 3 or px.max() < 0 or py.max() < 0 or px.min() >= w or py.min() >= h:
        return out
    one, half = 1 << 16, 1 << 15
    top = int(np.argmin(py))
    ymax = min(int(py.max()), h - 1)
    # two walkers around the polygon from the top vertex: forwards (+1) and backwards (-1)
    walkers = [dict(idx=top, step=1, x=-one, dx=0, end=int(py[top])), dict(idx=top, step=n - 1, x=-one, dx=0, end=int(py[top]))]
    budget = n
    y = int(py[top])
    while True:
        for wk in walkers:
            if y >= wk["end"]:
                i0 = wk["idx"]
                i1 = (i0 + wk["step"]) % n
                while budget > 0:
                    budget -= 1
                    if py[i1] > y:
                        dy = int(py[i1]) - y
                        wk.update(idx=i1, end=int(py[i1]), x=int(px[i0]) << 16,
                                  dx=_div_toward_zero((int(px[i1]) - int(px[i0])) * 2 * one + dy, 2 * dy))
                        break
                    i0, i1 = i1, (i1 + wk["step"]) % n
                else:
                    budget = -1
        if budget < 0:
            break
        if y >= 0:
            left, right = sorted((walkers[0]["x"], walkers[1]["x"]))
            x0, x1 = (left + half) >> 16, (right + half) >> 16
            if x1 >= 0 and x0 < w:
                out[y, max(x0, 0) : min(x1, w - 1) + 1] = True
        for wk in walkers:
            wk["x"] += wk["dx"]
        y += 1
        if y > ymax:
            break
    return out


def _div_toward_zero(a: int, b: int) -> int:
    """Integer division rounding toward zero (C semantics), b > 0."""
    return a // b if a >= 0 else -((-a) // b)


def _blend(canvas: np.ndarray, where: np.ndarray, color) -> None:
    """canvas = 0.4 canvas + 0.6 (canvas with `color` at `where`), rounded to uint8 (in place)."""
    old = canvas[where].astype(np.float32)
    new = np.rint(np.float32(0.4) * old + np.float32(0.6) * np.asarray(color, np.float32))
    canvas[where] = np.clip(new, 0, 255).astype(np.uint8)


def check_canvas(xy: np.ndarray, size) -> tuple[int, int]:
    """(H, W) after checking that the canvas is 8..4096 pixels a side and that no present keypoint
    of `xy` (18, 2) lies far outside it (which would only cost time)."""
    h, w = int(size[0]), int(size[1])
    if min(h, w) < 8 or max(h, w) > 4096:
        raise ValueError(f"the pose canvas size must be (height, width) between 8 and 4096 pixels, got {tuple(size)}")
    far = np.isfinite(xy).all(1) & ((xy < -max(h, w)) | (xy > 2 * max(h, w))).any(1)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise ValueError(f"keypoint {i} ({POSE_KEYPOINTS[i]}) at ({xy[i, 0]:g}, {xy[i, 1]:g}) lies far outside the {w}x{h} canvas: "
                         "give keypoints in pixels of the pose image (and its canvas size), or mark the point missing")
    return h, w


def render_pose(keypoints, size: tuple[int, int]) -> tuple[np.ndarray, list]:
    """(uint8 (H, W, 3) RGB skeleton, [bool (H, W) or None per limb]) for parsed keypoints (18, 2)."""
    xy = parse_keypoints(keypoints)
    h, w = check_canvas(xy, size)
    present = np.isfinite(xy).all(1)
    canvas = np.zeros((h, w, 3), np.uint8)
    for i in np.flatnonzero(present):
        _fill_disc(canvas, int(xy[i, 0]), int(xy[i, 1]), JOINT_RADIUS, POSE_COLORS[i])
    limbs = []
    for i, (a, b) in enumerate(POSE_LIMBS):
        if not (present[a] and present[b]):
            limbs.append(None)
            continue
        pixels = fill_convex((h, w), limb_polygon(xy[a], xy[b]))
        _blend(canvas, pixels, POSE_COLORS[i])
        limbs.append(pixels)
    return canvas, limbs


def pose_channels(keypoints, size: tuple[int, int]) -> np.ndarray:
    """The authors' 20-channel DeepFashion pose input.

    keypoints: 18 OpenPose COCO-18 points (POSE_KEYPOINTS) in pixels of an image of `size` (H, W),
        in any form `parse_keypoints` reads; missing points (and their limbs) are left out.
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


__all__ = ["BODY25_TO_COCO18", "CHANNEL_ENCODINGS", "FACE_DISTANCE_PARTS", "FACE_EDGE_CHANNELS", "FACE_PARTS", "POSE_CHANNELS",
           "POSE_COLORS", "POSE_KEYPOINTS", "POSE_LIMBS", "channel_encoding", "check_canvas", "distance_map", "face_edge_channels",
           "keypoints_and_canvas", "parse_keypoints", "part_boundary", "pose_channels", "render_pose", "resize_channels"]
