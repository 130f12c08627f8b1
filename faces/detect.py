"""Faces and their 68 landmarks: dlib's HOG detector and its 68-point shape predictor.

The detector (HOG features + a linear SVM, `dlib.get_frontal_face_detector()`, no model file; one
per thread) and the predictor (`shape_predictor_68_face_landmarks.dat` from the
`face-recognition-models` package; loaded once per process, under a lock) load on first use.
Landmarks follow iBUG 300-W: 0-16 jaw, 17-26 brows, 27-35 nose, 36-41 / 42-47 the image-left /
image-right eye, 48-59 outer lip (48 and 54 the mouth corners), 60-67 inner lip. All points are
pixel indices (x, y): the centre of pixel (i, j) is (i, j).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from . import warp

WORK_SIDE = 640  # detect on a copy whose longer side is at most this (landmarks use the full photo)
UPSAMPLE_BELOW = 400  # ...and upsample it once when it is smaller, for faces under 80 px
RETRY_ANGLES = (30.0, -30.0, 60.0, -60.0)  # degrees, tried in order when none is found (the rolled filters
# cover +-45 around each: all of -90 to +90 on the astronaut)
# get_frontal_face_detector's filters for rolled faces (0-2 are upright) -> the turn (degrees,
# counter-clockwise) that rights them, measured on the astronaut rolled +-15 to +-45 degrees.
ROLLED_TURNS = {3: -30.0, 4: 30.0}
MIN_SCORE = 0.2  # detections with a lower SVM margin are dropped (see `detect`)
PATCH_BOX = 120.0  # px: the size a face gets in the copy the detector searches again
ROLL_LIMIT = 8.0  # degrees of roll above which landmarks are predicted again on an upright patch
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

_lock = threading.Lock()
_predictor = None
_local = threading.local()


@dataclass(frozen=True, eq=False)
class Face:
    """One face: the eye and mouth centres `align` needs, and what the detector gave.

    eye_left / eye_right: centres of the image-left / image-right eye; mouth: the midpoint of the
    mouth corners (pixel indices). landmarks: float (68, 2) or None for a face built from points;
    box: (x0, y0, x1, y1) bounds of the detection; score: the detector's SVM margin (the better of
    the first detection and the one on the upright patch, when there was one); angle: the
    turn (degrees, counter-clockwise) the photo needed before the detector found the face.
    """

    eye_left: tuple[float, float]
    eye_right: tuple[float, float]
    mouth: tuple[float, float]
    landmarks: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    score: float = 0.0
    angle: float = 0.0

    @classmethod
    def from_landmarks(cls, landmarks, box=None, score: float = 0.0, angle: float = 0.0) -> "Face":
        """A face from 68 iBUG landmarks (x, y): eye centres from 36-41 and 42-47, mouth from 48 and 54."""
        lm = np.asarray(landmarks, np.float64)
        if lm.shape != (68, 2) or not np.isfinite(lm).all():
            raise ValueError(f"landmarks must be 68 finite (x, y) points in iBUG 300-W order, got shape {lm.shape}")
        if box is None:
            box = (*lm.min(0), *lm.max(0))
        point = lambda p: (float(p[0]), float(p[1]))  # noqa: E731
        return cls(point(lm[36:42].mean(0)), point(lm[42:48].mean(0)), point((lm[48] + lm[54]) / 2),
                   lm, tuple(float(v) for v in box), float(score), float(angle))

    @property
    def area(self) -> float:
        if self.box is None:
            return 0.0
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def transformed(self, matrix: np.ndarray) -> "Face":
        """The same face after an affine map (3x3, pixel indices), e.g. into an aligned crop."""
        move = lambda p: tuple(float(v) for v in warp.apply(matrix, p))  # noqa: E731
        lm = None if self.landmarks is None else warp.apply(matrix, self.landmarks)
        box = None
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            corners = warp.apply(matrix, [(x0, y0), (x1, y0), (x0, y1), (x1, y1)])
            box = (*corners.min(0), *corners.max(0))
        return replace(self, eye_left=move(self.eye_left), eye_right=move(self.eye_right), mouth=move(self.mouth),
                       landmarks=lm, box=None if box is None else tuple(float(v) for v in box))


def predictor_path() -> str:
    """Where `face-recognition-models` keeps the 68-point model (found without importing the package,
    whose __init__ needs pkg_resources, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 68-point landmark model is missing: pip install face-recognition-models==0.3.0")
    return os.path.join(spec.submodule_search_locations[0], "models", PREDICTOR_FILE)


def models():
    """(detector, predictor): the predictor loaded once per process under a lock (dlib documents it as
    safe to share between threads); the detector one per thread (dlib's object_detector keeps scratch
    buffers, so concurrent calls on one instance crash; making one takes ~0.2 s)."""
    global _predictor
    try:
        import dlib
    except ImportError as e:
        raise RuntimeError("face detection needs dlib: pip install dlib-bin==20.0.1.post1") from e
    if _predictor is None:
        with _lock:
            if _predictor is None:
                _predictor = dlib.shape_predictor(predictor_path())
    detector = getattr(_local, "detector", None)
    if detector is None:
        detector = _local.detector = dlib.get_frontal_face_detector()
    return detector, _predictor


def as_rgb_array(image) -> np.ndarray:
    """A PIL image or uint8 array (H, W), (H, W, 3|4) -> contiguous uint8 (H, W, 3)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected a PIL image or a uint8 array (H, W[, 3]), got {array.dtype} {array.shape}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, 2)
    return np.ascontiguousarray(array[..., :3])


def _landmarks(predictor, image: np.ndarray, box) -> np.ndarray:
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = predictor(image, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def _upright_landmarks(detector, predictor, photo_image: Image.Image, center, half: float, turn: float,
                       search: bool = True):
    """Landmarks from a full-resolution patch of the photo turned by `turn` degrees around `center`,
    where the face (a detection square of half-side `half`) sits upright: with `search`, the detector
    runs again on the patch for a box the predictor knows (kept as it was when it finds none), and the
    landmarks are mapped back to the photo. Returns (landmarks, center, half, score) of the box used
    (score -inf when the detector found none on the patch or did not search)."""
    side = int(np.ceil(4 * half))
    patch_to_photo = warp.rotation(-turn, center) @ warp.translation(*(np.asarray(center) - (side - 1) / 2))
    c = (side - 1) / 2
    box, score = (c - half, c - half, c + half, c + half), -np.inf
    # The detector runs on a copy where the box is ~120 px (as fast as it gets, above its 80 px floor).
    shrink = max(1.0, 2 * half / PATCH_BOX)
    small = int(np.ceil(side / shrink))
    small_to_patch = warp.translation(-0.5, -0.5) @ warp.scaling(shrink) @ warp.translation(0.5, 0.5)
    rects = ()
    if search:
        copy = warp.resample(photo_image, patch_to_photo @ small_to_patch, (small, small), fast=True)
        rects, scores, _ = detector.run(np.asarray(copy), 1 if 2 * half < 100 else 0, 0.0)
    if len(rects):
        cs = (small - 1) / 2
        i = min(range(len(rects)), key=lambda i: np.hypot(rects[i].center().x - cs, rects[i].center().y - cs))
        r = rects[i]
        box, score = tuple(warp.apply(small_to_patch,
                                      [(r.left(), r.top()), (r.right(), r.bottom())]).ravel()), scores[i]
    # The predictor reads the box and a little around it: a full-resolution crop of the patch.
    margin = int(half / 2)
    x0, y0 = max(0, int(min(box[0], box[2])) - margin), max(0, int(min(box[1], box[3])) - margin)
    x1, y1 = min(side,
                 int(np.ceil(max(box[0], box[2]))) + margin), min(side, int(np.ceil(max(box[1], box[3]))) + margin)
    crop_to_photo = patch_to_photo @ warp.translation(x0, y0)
    crop = np.asarray(warp.resample(photo_image, crop_to_photo, (x1 - x0, y1 - y0), fast=True))
    shifted = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    landmarks = warp.apply(crop_to_photo, _landmarks(predictor, crop, shifted))
    center = warp.apply(patch_to_photo, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    return landmarks, center, (box[2] - box[0]) / 2, score


def roll(landmarks: np.ndarray) -> float:
    """The eye line's angle, degrees counter-clockwise on screen (0 for an upright face)."""
    dx, dy = landmarks[42:48].mean(0) - landmarks[36:42].mean(0)
    return float(np.degrees(np.arctan2(-dy, dx)))


def _level(detector, predictor, photo_image, landmarks, center, half, turn, score, search: bool = True):
    """(landmarks, score) predicted again on patches turned upright while the roll the predictor saw
    (the face's roll plus the turn it was given) exceeds ROLL_LIMIT (at most twice)."""
    for _ in range(2):
        if abs(roll(landmarks) + turn) <= ROLL_LIMIT:
            break
        turn = -roll(landmarks)
        landmarks, center, half, upright_score = _upright_landmarks(detector, predictor, photo_image, center, half,
                                                                    turn, search)
        score = max(score, upright_score)
    return landmarks, score


def _faces_at(photo: np.ndarray, photo_image: Image.Image, work: np.ndarray, work_to_photo: np.ndarray, angle: float,
              upsample: int):
    """Faces found in `work` (the photo turned by `angle` and scaled), landmarks from the full photo.

    The 68-point predictor, like the detector, expects an upright face: when the landmarks show
    a roll of more than ROLL_LIMIT degrees, they are predicted again on a patch turned upright.
    """
    detector, predictor = models()
    rects, scores, kinds = detector.run(work, upsample, 0.0)
    faces = []
    for rect, score, kind in zip(rects, scores, kinds):
        corners = [(rect.left(), rect.top()), (rect.right(), rect.top()), (rect.left(), rect.bottom()),
                   (rect.right(), rect.bottom())]
        in_photo = warp.apply(work_to_photo, corners)
        box = (*in_photo.min(0), *in_photo.max(0))
        center, half = in_photo.mean(0), np.hypot(*(in_photo[1] - in_photo[0])) / 2
        # The detector's kinds 3 and 4 are its filters for faces rolled one way or the other, whose
        # roll the predictor cannot read off (it gives level eyes on a face rolled 40 degrees): the
        # face is looked at again on an upright patch turned 30 degrees the way the kind says.
        turn = angle + ROLLED_TURNS.get(int(kind), 0.0)
        if turn == 0.0:
            landmarks = _landmarks(predictor, photo, box)
        else:
            landmarks, center, half, upright_score = _upright_landmarks(detector, predictor, photo_image, center, half,
                                                                        turn)
            score = max(score, upright_score)
        landmarks, score = _level(detector, predictor, photo_image, landmarks, center, half, turn, score)
        faces.append(Face.from_landmarks(landmarks, box, score, angle))
    return faces


def follow(image, previous: Face, *, search: bool = True, min_score: float = MIN_SCORE) -> Face | None:
    """The face `previous` (found in the last video frame) in the next frame, or None.

    Only a patch around where it was, turned upright by its roll, is looked at, which costs a
    fraction of `detect` on the whole frame. With `search` the detector runs on the patch (None when
    it finds no face there: scene cut, face gone; call `detect` then); without, only the landmark
    predictor runs (~5x cheaper), on the last frame's box, and the box moves with the landmarks (the
    similarity that takes the last frame's landmarks to the new ones). It cannot tell a face from a
    wall, so it gives up (None) only when the landmarks jump (scale off by over 20 %, or a residual
    over a tenth of the box): `FaceTrack` checks with the detector every few frames.
    """
    if previous.landmarks is None or previous.box is None:
        raise ValueError("follow needs a face from detect (with landmarks and a box), not one built from points")
    photo_image = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(as_rgb_array(image))
    detector, predictor = models()
    turn = -roll(previous.landmarks)
    x0, y0, x1, y1 = previous.box
    t = np.radians(turn)
    half = (x1 - x0) / 2 / (abs(np.cos(t)) + abs(np.sin(t)))  # the box bounds a square turned by the roll
    center = ((x0 + x1) / 2, (y0 + y1) / 2)
    landmarks, center, half, score = _upright_landmarks(detector, predictor, photo_image, center, half, turn, search)
    if search and score < min_score:
        return None
    landmarks, score = _level(detector, predictor, photo_image, landmarks, center, half, turn, score, search)
    if not search:  # the box follows the landmarks
        moved, residual = warp.fit_similarity(previous.landmarks, landmarks)
        scale = np.sqrt(abs(np.linalg.det(moved[:2, :2])))
        if not 1 / 1.2 < scale < 1.2 or residual > 0.1 * half:
            return None
        center, half, score = warp.apply(moved, center), half * scale, previous.score
    square = warp.apply(warp.rotation(-turn, center), [(center[0] + dx * half, center[1] + dy * half)
                                                      for dx in (-1, 1) for dy in (-1, 1)])
    return Face.from_landmarks(landmarks, (*square.min(0), *square.max(0)), score, previous.angle)


def detect(image, *, angles=RETRY_ANGLES, min_score: float = MIN_SCORE) -> list[Face]:
    """Faces in a photo with 68 landmarks each, the largest first; [] when there is none.

    dlib's HOG detector finds faces within about 45 degrees of upright (its filters for rolled faces
    included, whose roll is then found on a patch turned 30 degrees the filter's way); the
    68-point predictor wants them upright: landmarks showing more than 8 degrees of roll are
    predicted again on a patch of the full-resolution photo turned upright, and mapped back. When
    no face is found, the photo is turned by each of `angles` in turn (degrees, counter-clockwise)
    and searched again; the first turn that finds faces wins. Detection runs on a copy whose longer
    side is at most 640 px (upsampled once when under 400 px): faces down to ~80 px at that scale
    (~130 px in a 1024 px photo, ~40 px in a small one).

    Args:
        image: PIL image or uint8 array (H, W[, 3]).
        angles: the turns to try, in order, when no face is found as it is; () for none.
        min_score: detections scoring lower are dropped (a face's score is the detector's margin,
            on the upright patch when it was searched again there). dlib's own threshold is 0; on
            scikit-image's astronaut, false detections (her suit's badge) scored 0.09-0.13 and her
            face 1.2-1.8 (upright, or rolled by up to 40 degrees and scored again upright).
    Returns:
        list of `Face`, largest box first.
    """
    photo = as_rgb_array(image)
    h, w = photo.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    upsample = 1 if max(size) < UPSAMPLE_BELOW else 0
    # work pixel q -> photo pixel (q + 0.5) / scale - 0.5 (the exact map of a resize to `size`)
    work_to_photo = np.diag([w / size[0], h / size[1], 1.0])
    work_to_photo[:2, 2] = 0.5 * np.array([w / size[0], h / size[1]]) - 0.5
    photo_image = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(photo)
    work = photo_image.resize(size, Image.BILINEAR, reducing_gap=2.0) if scale < 1 else photo_image
    faces = [f for f in _faces_at(photo, photo_image, np.asarray(work), work_to_photo, 0.0, upsample)
             if f.score >= min_score]
    for angle in () if faces else angles:
        # The turned copy: a canvas big enough for the whole turned photo, centred on it.
        side = int(np.ceil(np.hypot(*work.size)))
        turned_to_work = warp.rotation(-angle, ((work.size[0] - 1) / 2, (work.size[1] - 1) / 2)) @ warp.translation(
            (work.size[0] - side) / 2, (work.size[1] - side) / 2)
        turned = warp.resample(work, turned_to_work, (side, side), fast=True)
        faces = [f for f in _faces_at(photo, photo_image, np.asarray(turned), work_to_photo @ turned_to_work, angle,
                                      upsample) if f.score >= min_score]
        if faces:
            break
    return _distinct(sorted(faces, key=lambda f: -f.score))


def _distinct(faces: list[Face]) -> list[Face]:
    """The faces (best score first) without repeats (two detections re-detected on one upright face:
    eyes within a third of the eye distance), largest box first."""
    kept = []
    for f in faces:
        eyes = np.array([f.eye_left, f.eye_right])
        if all(np.abs(eyes - [k.eye_left, k.eye_right]).max() > np.hypot(*(eyes[1] - eyes[0])) / 3 for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: -f.area)
