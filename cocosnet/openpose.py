"""OpenPose keypoints in, checked COCO-18 (x, y) arrays out: the parsing half of the authors'
DeepFashion pose input (the drawing is in encodings.py, the rasteriser in raster.py).

Accepted forms: an array / nested list [18, 2] or [18, 3] (x, y, confidence), 54 (COCO-18) or 75
(BODY_25) flat numbers, an OpenPose JSON dict ({"people": [{"pose_keypoints_2d": [...]}]}, first
person), its text, or a path to a .json file. Missing points: negative or NaN coordinates, or
confidence 0 (OpenPose writes 0, 0, 0). Our one addition to the format: "canvas_height" and
"canvas_width", the size of the image the keypoints were found in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

POSE_KEYPOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
                  "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# OpenPose BODY_25 -> COCO-18 (BODY_25 adds the mid-hip at 8 and six foot points at 19-24)
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)


def loads(text: str, what: str = "the keypoint text"):
    """OpenPose JSON text -> the parsed object; a ValueError that says what to give otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); give OpenPose JSON "
                         '({"people": [{"pose_keypoints_2d": [x0, y0, c0, ...]}]}) or a list of 18 [x, y] '
                         "pairs") from None


def read_json(source):
    """A path to a JSON file, or JSON text (a str starting with "{" or "[") -> the parsed object;
    anything else (an array, a list, a dict) as it is. For input a user types, call `loads`: it
    never reads a file."""
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and source.lstrip()[:1] in ("{", "[")):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no keypoints file at {str(source)!r}: give an OpenPose JSON file, its text, or an "
                             "array [18, 2|3]")
        try:
            source = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{path.name!r} is not a text file: give the keypoints as OpenPose JSON") from None
    return loads(source) if isinstance(source, str) else source


def parse_keypoints(keypoints) -> np.ndarray:
    """18 COCO-18 keypoints -> float64 (18, 2) pixel (x, y), NaN where a point is missing.

    Accepts an array / nested list [18, 2] or [18, 3] (x, y, confidence), a flat list of 54 (or,
    from OpenPose BODY_25, 75) numbers, an OpenPose JSON dict ({"people": [{"pose_keypoints_2d":
    [...]}]}, first person) or its text / a path to a .json file. Missing points: negative or NaN
    coordinates, or confidence 0 (OpenPose writes 0, 0, 0).
    """
    keypoints = read_json(keypoints)
    if isinstance(keypoints, dict):
        people = keypoints.get("people")
        first = people[0] if isinstance(people, list) and people else None
        if not isinstance(first, dict) or "pose_keypoints_2d" not in first:
            raise ValueError('OpenPose JSON needs "people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}] '
                             'with at least one person')
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
        got = f"{arr.size} numbers" if arr.ndim == 1 else f"shape {arr.shape}"
        raise ValueError(f"need the 18 OpenPose COCO-18 keypoints ({', '.join(POSE_KEYPOINTS)}) as [18, 2] (x, y) "
                         f"or [18, 3] (x, y, confidence), or 54 / 75 flat numbers; got {got}")
    xy = arr[:, :2].copy()
    missing = ~np.isfinite(xy).all(1) | (xy < 0).any(1)
    if arr.shape[1] == 3:
        missing |= ~(arr[:, 2] > 0)
    xy[missing] = np.nan
    return xy


def keypoints_and_canvas(source, default_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(parse_keypoints(source), canvas (H, W)): the canvas is `default_size` unless `source` is a
    JSON dict with "canvas_height" and "canvas_width" (our addition to OpenPose's format: the size
    of the image the keypoints were found in)."""
    source = read_json(source)
    size = tuple(int(v) for v in default_size)
    if isinstance(source, dict) and ("canvas_height" in source or "canvas_width" in source):
        try:
            size = (int(source["canvas_height"]), int(source["canvas_width"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError('give both "canvas_height" and "canvas_width" as whole numbers of pixels (the image the '
                             'keypoints belong to)') from None
    return parse_keypoints(source), size


def check_canvas(xy: np.ndarray, size) -> tuple[int, int]:
    """(H, W) after checking that the canvas is 8..4096 pixels a side and that no present keypoint
    of `xy` (18, 2) lies far outside it (which would only cost time)."""
    h, w = int(size[0]), int(size[1])
    if min(h, w) < 8 or max(h, w) > 4096:
        raise ValueError(f"the pose canvas size must be (height, width) between 8 and 4096 pixels, got {tuple(size)}")
    far = np.isfinite(xy).all(1) & ((xy < -max(h, w)) | (xy > 2 * max(h, w))).any(1)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise ValueError(f"keypoint {i} ({POSE_KEYPOINTS[i]}) at ({xy[i, 0]:g}, {xy[i, 1]:g}) lies far outside the "
                         f"{w}x{h} canvas: "
                         "give keypoints in pixels of the pose image (and its canvas size), or mark the point missing")
    return h, w


def to_openpose(xy: np.ndarray, size: tuple[int, int]) -> dict:
    """Parsed keypoints (18, 2) (NaN = missing) and the canvas (H, W) -> an OpenPose-style dict (one
    person, confidence 1, missing points 0, 0, 0) with "canvas_height" / "canvas_width": what
    `keypoints_and_canvas` reads back unchanged."""
    points = np.asarray(xy, np.float64)
    flat = [float(v) for p in points for v in ((0.0, 0.0, 0.0) if np.isnan(p).any() else (p[0], p[1], 1.0))]
    return {"people": [{"pose_keypoints_2d": flat}], "canvas_height": int(size[0]), "canvas_width": int(size[1])}


__all__ = ["BODY25_TO_COCO18", "POSE_KEYPOINTS", "check_canvas", "keypoints_and_canvas", "loads", "parse_keypoints",
           "read_json", "to_openpose"]
