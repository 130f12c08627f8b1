"""Example files for the tabs, rendered from the synthetic categories into one folder at start."""

from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import synthetic

CATEGORY = "faces"
RESOLUTION = 128


_KNOWN_FACES: dict = {}  # pixel digest of a face example -> (eye_left, eye_right, mouth), pixel indices


def _digest(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image, np.uint8)
    return hashlib.sha1(repr(image.shape).encode() + image.tobytes()).hexdigest()


def _eyes_and_mouth(cat, keypoints) -> tuple:
    """The eye and mouth centres of a rendered face (the renderer's keypoints are continuous pixel
    coordinates; pixel indices are 0.5 less)."""
    kp = {name: np.asarray(k, np.float64) - 0.5 for name, k in zip(cat.keypoint_names, keypoints)}
    return ((kp["left_eye_outer"] + kp["left_eye_inner"]) / 2, (kp["right_eye_outer"] + kp["right_eye_inner"]) / 2,
            (kp["left_mouth_corner"] + kp["right_mouth_corner"]) / 2)


def remember_faces(images, keypoints) -> None:
    """Record rendered face examples (uint8 (N, H, W, 3) and the renderer's (N, K, 2) keypoints) for
    `known_face`."""
    cat = synthetic.category(CATEGORY)
    for image, points in zip(images, keypoints):
        _KNOWN_FACES[_digest(image)] = _eyes_and_mouth(cat, points)


def known_face(photo) -> tuple | None:
    """(eye_left, eye_right, mouth) of a bundled face example (a PIL image or uint8 array of its exact
    pixels, as any upload of the file gives them), else None. dlib's detector does not see these drawn
    faces; the renderer placed their eyes and mouth, so they are aligned from those points instead."""
    folder()
    return _KNOWN_FACES.get(_digest(np.asarray(photo.convert("RGB") if isinstance(photo, Image.Image) else photo)))


@functools.lru_cache(maxsize=None)
def folder() -> Path:
    """Render the example files once per process; returns their folder."""
    out = Path(tempfile.mkdtemp(prefix="app-examples-"))
    cat = synthetic.category(CATEGORY)
    batch = synthetic.sample(CATEGORY, 6, resolution=RESOLUTION, seed=11, pose="medium")
    for i in range(len(batch.image)):
        Image.fromarray(batch.image[i]).save(out / f"face_{i}.png")
        Image.fromarray(batch.labels[i].astype(np.uint8), mode="L").save(out / f"face_{i}_labels.png")  # index PNG
        Image.fromarray(synthetic.colorize(batch.labels[i], cat.num_classes)).save(out / f"face_{i}_labels_color.png")
        Image.fromarray(synthetic.edge_map(batch.labels[i]).astype(np.uint8) * 255).save(out / f"face_{i}_edges.png")
    # another texture on the same structures: exemplars whose right answer is known
    retextured = synthetic.render(CATEGORY, batch.structure,
                                  synthetic.sample_textures(CATEGORY, len(batch.image), seed=99), RESOLUTION)
    for i in range(len(batch.image)):
        Image.fromarray(retextured.image[i]).save(out / f"exemplar_{i}.png")
    for images in (batch.image, retextured.image):  # the renderer knows where their eyes and mouth are
        remember_faces(images, batch.keypoints)
    # a short "video": one structure turning slowly, one texture (animated GIF, 8 frames)
    s = synthetic.sample_structures(CATEGORY, 2, seed=5, pose="medium")
    t = synthetic.sample_textures(CATEGORY, 1, seed=5)
    steps = np.linspace(0, 1, 8)[:, None]
    frames = synthetic.render(CATEGORY, s[:1] * (1 - steps) + s[1:] * steps, np.repeat(t, 8, 0), RESOLUTION).image
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(out / "video.gif", save_all=True, append_images=ims[1:], duration=120, loop=0)
    # an edit on the congealed frame (RGBA, any size: it is sampled in normalised coordinates): a pair of
    # translucent blue glasses across the eye line, where the congealed faces put their eyes
    edit = np.zeros((RESOLUTION, RESOLUTION, 4), np.uint8)
    y0, y1 = int(0.36 * RESOLUTION), int(0.47 * RESOLUTION)
    for x0, x1 in ((0.22, 0.46), (0.54, 0.78)):
        edit[y0:y1, int(x0 * RESOLUTION):int(x1 * RESOLUTION)] = (40, 90, 230, 200)
    edit[y0 + 2:y0 + 5, int(0.46 * RESOLUTION):int(0.54 * RESOLUTION)] = (20, 20, 20, 255)
    Image.fromarray(edit, "RGBA").save(out / "edit_glasses.png")
    # a real photo bundled with scikit-image (no download)
    try:
        import skimage.data

        Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.BICUBIC).save(out / "astronaut.png")
        # a cat photo (451 x 300): for the authors' cat model (`--gangealing cat.pt`)
        Image.fromarray(skimage.data.chelsea()).save(out / "chelsea.png")
    except Exception:  # scikit-image missing or without its data: synthetic examples only
        pass
    return out


def photos(*names: str) -> list[str]:
    """The scikit-image photos among `names` that exist in this install."""
    return [path(n) for n in names if (folder() / n).exists()]


def path(name: str) -> str:
    return str(folder() / name)
