"""What a CoCosNet pipeline asks a user for, in the user's terms, and reading it from what a user
gives (images, arrays, OpenPose JSON), with a ValueError that says what to give instead.

The network reads a mask, an edge map or a stack of channels (`pipe.input_kind`); a user gives:

    "mask"      a label map of class ids (index PNG / int array): ours, the authors' ADE20k / CelebA-HQ
    "edge"      an edge image (white edges on black)
    "face"      a CelebAMask-HQ face label map: the authors' CelebA-HQ edge model builds its 15 channels from it
    "pose"      18 OpenPose keypoints: the authors' DeepFashion model builds its 20 channels from them
    "channels"  a raw float stack [C, H, W] (nothing an image can give)

`pipe` may be None (no model yet): then the answers are the bundled model's (synthetic faces, masks).
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from . import openpose
from .encodings import FACE_PARTS, render_pose
from .pipeline import to_label_array

INPUT_KINDS = ("mask", "edge", "face", "pose", "channels")
LABEL_KINDS = ("mask", "face")  # the kinds given as label maps
MAX_JSON_BYTES = 1_000_000
# the classes of the synthetic faces (synthetic.category("faces").class_names, the bundled models'),
# and the CelebAMask-HQ id (encodings.FACE_PARTS) of each: to feed those faces to the authors' face models
SYNTHETIC_FACE_PARTS = ("background", "skin", "hair", "neck", "left_ear", "right_ear", "left_brow", "right_brow",
                        "left_eye", "right_eye", "nose", "mouth")
FACE_TO_CELEBA = np.array([FACE_PARTS.index(name.replace("left_", "l_").replace("right_", "r_"))
                           for name in SYNTHETIC_FACE_PARTS])


def face_labels_for(pipe, celeba_ids) -> np.ndarray:
    """A CelebAMask-HQ face-parsing map (FACE_PARTS ids) -> the ids this model's label maps use: the
    same for the authors' face models (19 classes); the synthetic faces' for the bundled models (12:
    both lips and the inner mouth become "mouth", parts they lack become background). A ValueError
    for a model whose classes are not face parts."""
    ids = np.asarray(celeba_ids, np.int64)
    n = num_classes(pipe)
    if n == len(FACE_PARTS):
        return ids
    if n != len(SYNTHETIC_FACE_PARTS):
        raise ValueError(f"this CoCosNet model reads {n} classes, not face parts: a face map cannot be given to it")
    table = np.zeros(len(FACE_PARTS), np.int64)
    table[FACE_TO_CELEBA] = np.arange(len(SYNTHETIC_FACE_PARTS))
    table[[FACE_PARTS.index("u_lip"), FACE_PARTS.index("l_lip")]] = SYNTHETIC_FACE_PARTS.index("mouth")
    return table[ids]


def input_kind(pipe) -> str:
    """What to ask the user for: one of INPUT_KINDS, from the pipeline's config."""
    if not pipe:
        return "mask"
    if pipe.input_kind == "channels":
        return {"face_edges": "face", "pose": "pose"}.get(pipe.channel_encoding, "channels")
    return pipe.input_kind


def num_classes(pipe) -> int:
    """Class ids 0..n-1 of the label maps the user gives (for "face": CelebAMask-HQ's 19); for
    models that read no label map, the synthetic faces' (the app's examples)."""
    if input_kind(pipe) == "face":
        return len(FACE_PARTS)
    return int(pipe.num_classes) if pipe and pipe.num_classes else len(SYNTHETIC_FACE_PARTS)


def class_names(pipe) -> tuple:
    """A name per class id: the checkpoint's own, else CelebAMask-HQ's for 19 classes (the authors'
    CelebA-HQ models), the synthetic faces' for 12, "class i" otherwise."""
    names = pipe.class_names if pipe else None
    n = num_classes(pipe)
    if names and len(names) == n:
        return tuple(names)
    if n == len(FACE_PARTS):
        return FACE_PARTS
    return SYNTHETIC_FACE_PARTS if n == len(SYNTHETIC_FACE_PARTS) else tuple(f"class {i}" for i in range(n))


def load_pose(pipe, source, what: str = "input pose") -> dict:
    """Keypoints (OpenPose JSON text, a parsed dict, a list or an array [18, 2|3]) -> an
    OpenPose-style dict with its canvas size, checked. Text is only parsed as JSON, never taken for
    a file path. Raises ValueError saying what to give."""
    if source is None or (isinstance(source, str) and not source.strip()):
        raise ValueError(f"no {what} given: paste OpenPose keypoints JSON (or upload a .json file, or pick an example) "
                         "first")
    if isinstance(source, str):
        if len(source) > MAX_JSON_BYTES:
            raise ValueError(f"the {what} is longer than {MAX_JSON_BYTES // 1000} kB; give the keypoints of one person")
        source = openpose.loads(source, f"the {what}")
    r = pipe.resolution if pipe else 256
    try:
        xy, (h, w) = openpose.keypoints_and_canvas(source, (r, r))
        openpose.check_canvas(xy, (h, w))
    except ValueError as e:
        raise ValueError(f"the {what}: {e}") from None
    if np.isnan(xy).all():
        raise ValueError(f"the {what} has none of the 18 keypoints (all missing); give at least the points of one limb")
    return openpose.to_openpose(xy, (h, w))


def pose_preview(pipe, source) -> np.ndarray | None:
    """The pose as the model sees it: uint8 RGB skeleton [H, W, 3] on its canvas; None for a model
    that reads no pose, or keypoints that do not load."""
    if input_kind(pipe) != "pose":
        return None
    try:
        pose = load_pose(pipe, source)
    except ValueError:
        return None
    return render_pose(pose, (pose["canvas_height"], pose["canvas_width"]))[0]


def load_input_map(pipe, source, what: str = "input map", palette=None):
    """What the user gave -> what `pipe.translate` / `pipe.match_points` take, for this model's kind:

    "mask" / "face": int64 class ids [H, W] from an int array, an index image (mode 1, L, P or I)
        or, with `palette` ((K, 3) uint8: the colour of each class id), an RGB(A) image in those
        colours (transparent = background); "edge": a greyscale PIL image (transparency over
        white); "pose": an OpenPose-style dict (`load_pose`). Images may be PIL images, uint8
        arrays or paths. Raises ValueError saying what to give.
    """
    kind = input_kind(pipe)
    if kind in LABEL_KINDS:
        what = f"{what} ({'face ' if kind == 'face' else ''}label map)"
        return _label_map(source, num_classes(pipe), what, palette)
    if kind == "edge":
        return _flatten_alpha(_open(source, f"{what} (edge map)")).convert("L")
    if kind == "pose":
        return load_pose(pipe, source, "input pose" if what == "input map" else what)
    raise ValueError(f"this CoCosNet checkpoint takes {pipe.input_channels} raw input channels that cannot be built "
                     "from an image; load a mask, edge, CelebA-HQ edge (15 channels) or DeepFashion pose (20 "
                     "channels) model")


def load_exemplar_map(pipe, source, palette=None):
    """The exemplar's own map for models that read it (`pipe.needs_exemplar_map`, the authors'
    maskmix models), loaded like the input map; None for other models."""
    if not (pipe and pipe.needs_exemplar_map):
        return None
    if source is None:
        raise ValueError("this CoCosNet checkpoint also needs the exemplar's own map: give the exemplar's label map "
                         "(same kind as the input map, the layout of the exemplar photo)")
    return load_input_map(pipe, source, "exemplar map", palette)


def example_pose(points: dict, canvas: int = 256) -> str:
    """OpenPose JSON (one person, COCO-18, confidence 1, absent points 0, 0, 0) on a square canvas
    from {keypoint name: (x, y)}."""
    xy = np.array([points.get(name, (np.nan, np.nan)) for name in openpose.POSE_KEYPOINTS], np.float64)
    return json.dumps(openpose.to_openpose(xy, (canvas, canvas)))


_STANDING = dict(nose=(128, 40), neck=(128, 72), r_shoulder=(100, 74), r_elbow=(92, 120), r_wrist=(88, 165),
                 l_shoulder=(156, 74), l_elbow=(164, 120), l_wrist=(168, 165), r_hip=(110, 160), r_knee=(108, 205),
                 r_ankle=(106, 248), l_hip=(146, 160), l_knee=(148, 205), l_ankle=(150, 248), r_eye=(121, 33),
                 l_eye=(135, 33), r_ear=(112, 38), l_ear=(144, 38))
_ARMS_UP = dict(_STANDING, r_elbow=(84, 48), r_wrist=(80, 10), l_elbow=(172, 48), l_wrist=(176, 10))
_TURNED = {k: v for k, v in dict(_STANDING, r_elbow=(104, 118), r_wrist=(126, 150), l_knee=(160, 200),
                                 l_ankle=(176, 240)).items() if k != "r_ear"}
# hand-made poses for the pose model's examples: standing, arms up, turned (the right ear hidden)
EXAMPLE_POSES = (example_pose(_STANDING), example_pose(_ARMS_UP), example_pose(_TURNED))


# ------------------------------------------------------------------ images
def _open(source, what: str) -> Image.Image:
    if isinstance(source, np.ndarray):
        channels_ok = source.ndim == 2 or (source.ndim == 3 and source.shape[-1] in (3, 4))
        if source.dtype != np.uint8 or not channels_ok:
            raise ValueError(f"the {what} must be an 8-bit image array [H, W] or [H, W, 3|4], got {source.dtype} "
                             f"{source.shape}")
        return Image.fromarray(source)
    if isinstance(source, Image.Image):
        return source
    if source is None:
        raise ValueError(f"no {what} given")
    try:
        with Image.open(source) as im:
            im.load()
            return im.copy()
    except (OSError, ValueError, TypeError):
        raise ValueError(f"the {what} is not an image file: give a PNG") from None


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Transparent pixels over white, as a viewer shows them."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    return im


def _label_map(source, n: int, what: str, palette) -> np.ndarray:
    if isinstance(source, np.ndarray) and source.ndim == 2 and np.issubdtype(source.dtype, np.integer):
        return to_label_array(source, n)
    im = _open(source, what)
    if im.mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        return to_label_array(im, n)
    if im.mode not in ("RGB", "RGBA", "LA", "PA") or palette is None:
        raise ValueError(f"the {what} is a {im.mode} image; give an index PNG (pixel value = class id)"
                         + (" or a PNG in the class colours" if palette is not None else ""))
    rgba = np.asarray(im.convert("RGBA"))
    return to_label_array(_colors_to_labels(rgba[..., :3], np.asarray(palette)[:n], rgba[..., 3] >= 128, what), n)


def _colors_to_labels(rgb: np.ndarray, palette: np.ndarray, opaque: np.ndarray, what: str) -> np.ndarray:
    """Exact palette colours [H, W, 3] -> class ids (transparent pixels: 0); other colours refused."""
    key = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = palette.astype(np.int64)
    pal_key = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_key)
    labels = order[np.clip(np.searchsorted(pal_key[order], key), 0, len(pal_key) - 1)]
    known = (pal_key[labels] == key) | ~opaque
    if not known.all():
        shown = ", ".join("#%02x%02x%02x" % tuple(int(v) for v in c) for c in np.unique(rgb[~known], axis=0)[:5])
        raise ValueError(f"the {what} has {int((~known).sum())} pixels in colours that are not class colours (e.g. "
                         f"{shown}); use only the colours of classes 0-{len(palette) - 1}, or give an index PNG "
                         "whose pixel values are class ids (and PNG, not JPEG: JPEG changes colours)")
    return np.where(opaque, labels, 0).astype(np.int64)
