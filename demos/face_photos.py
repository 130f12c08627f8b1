"""A visitor's face photo into the frame a face model was trained on, and the result back onto the
photo (`faces/`: dlib's detector and 68 landmarks, the FFHQ / CelebA-HQ alignment recipe, paste).

A tab whose model is a face model (the bundled ones, the authors' CoordGAN celebA, GANgealing
celeba, CoCosNet celebahq / celebahqedge, a folder whose model_index.json names its `face_frame`)
shows an "Align the face" checkbox, on by default: the photo is cropped to that model's frame
before the model sees it, and the result is pasted back onto the photo. A photo with no face found
is used as it is (the tab's centre crop), with a warning that says so. Other models (cats, cars,
folders that name no frame) see the photo as it is.
"""

from __future__ import annotations

from collections import deque

import gradio as gr
import numpy as np
from PIL import Image

import faces

from . import events, examples, inputs

CROP_SIDE = 256  # the aligned crop's side: the pipelines resize it to their own resolution
VIDEO_MIN_SIDE = 128  # a video frame's crop: the face's own scale, at least this
# (package, release) -> the face frame its training crops used (faces/README.md)
RELEASE_FRAMES = {("coordgan", "celebA"): "celebahq", ("gangealing", "celeba"): "celeba",
                  ("cocosnet", "celebahq"): "celebahq", ("cocosnet", "celebahqedge"): "celebahq"}
CHECKBOX_INFO = "detect the face, crop it as the model's training faces were, paste the result back"


def frame_for(pipe) -> str | None:
    """The face frame the loaded model was trained on: the one its folder's config names (`face_frame`
    in model_index.json: train/ writes it, `--face-frame`), else "synthetic" for the bundled models and
    the release's for the authors' face models; None for any other model (no alignment)."""
    configured = (getattr(pipe, "config", None) or {}).get("face_frame")
    if configured in faces.FRAMES:
        return configured
    weights = getattr(pipe, "weights", None) or {}
    if weights.get("kind") == "bundled":
        return "synthetic"
    if weights.get("kind") == "release":
        package = type(pipe).__module__.split(".")[0]
        return RELEASE_FRAMES.get((package, str(weights.get("source", "")).split(":", 1)[-1]))
    return None


def checkbox(pipe, **kwargs) -> gr.Checkbox:
    """The tab's "Align the face" checkbox (shown only for a face model)."""
    frame = frame_for(pipe)
    return gr.Checkbox(True, label="Align the face",
                       info=f"{CHECKBOX_INFO} ({frame} frame)" if frame else CHECKBOX_INFO,
                       visible=frame is not None, **kwargs)


def _aligned(photo: Image.Image, frame: str) -> faces.Aligned:
    """`faces.align_largest`, except for a bundled synthetic example: dlib does not see drawn faces, so
    it is aligned from the eyes and mouth the renderer drew (`examples.known_face`)."""
    known = examples.known_face(photo)
    if known is not None:
        return faces.align(photo, faces.Face(*known), CROP_SIDE, frame)
    return faces.align_largest(photo, CROP_SIDE, frame)


def align(pipe, photo: Image.Image, what: str, enabled) -> faces.Aligned | None:
    """The photo aligned to the model's frame, or None (not a face model, alignment off, no face:
    then a warning says the photo is used as it is)."""
    frame = frame_for(pipe)
    if not enabled or frame is None:
        return None
    try:
        return _aligned(photo, frame)
    except faces.NoFaceError:
        if not events.opening():
            gr.Warning(f"No face was found in the {what}: it is used as it is (centre crop). Untick \"Align the "
                       "face\" to skip the search.")
        return None


def load(pipe, source, what: str, enabled) -> tuple[Image.Image, Image.Image, faces.Aligned | None]:
    """(the photo, what the model sees: the aligned crop or the photo, the alignment or None)."""
    photo = inputs.load_rgb(source, what)
    aligned = align(pipe, photo, what, enabled)
    return photo, (aligned.image if aligned is not None else photo), aligned


def pasted(aligned: faces.Aligned | None, result):
    """`result` (in the crop's frame) back on the photo; unchanged without an alignment."""
    return result if aligned is None else aligned.paste(result)


def frames(pipe, reader, enabled, store: deque):
    """Video frames -> what the model sees, each frame's alignment appended to `store` (None where
    no face is found: that frame is used as it is). The face is followed from frame to frame
    (`faces.FaceTrack`: landmarks every frame, the detector every few) and cropped at its own scale
    in the frame (between VIDEO_MIN_SIDE and CROP_SIDE pixels: no detail is made up or lost, and a
    small face costs little)."""
    frame, track = frame_for(pipe), faces.FaceTrack()
    for image in reader:
        face = track(image) if enabled and frame is not None else None
        aligned = None
        if face is not None:
            side = faces.FRAMES[frame].side_in_photo(face.eye_left, face.eye_right, face.mouth)
            size = int(np.clip(round(side), VIDEO_MIN_SIDE, CROP_SIDE))
            aligned = faces.align(image, face, size, frame, exact=False)
        store.append(aligned)
        yield aligned.image if aligned is not None else image


def pasted_frames(results, store: deque):
    """The model's results for `frames(...)`, in order, pasted back onto their video frames."""
    for result in results:
        aligned = store.popleft()
        yield pasted(aligned, result)


def parsing_map(pipe, source, what: str = "photo") -> tuple[np.ndarray, Image.Image]:
    """A face photo -> (a CelebAMask-HQ parsing map of the aligned face from its landmarks, the crop
    it was drawn on); a gr.Error when no face is found (a map needs one)."""
    photo = inputs.load_rgb(source, what)
    try:
        aligned = _aligned(photo, frame_for(pipe) or "celebahq")
    except faces.NoFaceError:
        raise gr.Error(f"No face was found in the {what}, so no face map can be drawn from it: use a photo of a "
                       "face (frontal, eyes visible), or paint the map.") from None
    return faces.parsing_from_landmarks(aligned.face, (CROP_SIDE, CROP_SIDE)), aligned.image
