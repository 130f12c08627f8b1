"""The `/align_face` endpoint: a photo, a frame and a size -> the aligned crop and, as JSON, the
matrix from photo pixels to crop pixels with the face found (`faces/`). Hidden: the face tabs align
their photos themselves ("Align the face"); this is for scripts."""

from __future__ import annotations

import gradio as gr
import numpy as np

import faces

from . import events, inputs

FRAMES = (*faces.FRAMES, "center")  # "center": the centre crop, no face needed
MAX_SIZE = 1024


def align_face(photo, frame="ffhq", size=256):
    """-> (the crop, {frame, size, matrix (3x3, photo pixel indices -> crop pixel indices), face:
    eyes, mouth and 68 landmarks in the photo and in the crop, the detector's score; null for the
    centre crop})."""
    if frame not in FRAMES:
        raise gr.Error(f"Unknown frame {frame!r}: choose one of {', '.join(FRAMES)}.")
    if size is None or not float(size).is_integer() or not 16 <= int(size) <= MAX_SIZE:
        raise gr.Error(f"The size must be a whole number of pixels from 16 to {MAX_SIZE}.")
    image = inputs.load_rgb(photo, "photo")
    try:
        found = faces.align_largest(image, int(size),
                                    frame) if frame != "center" else faces.center_crop(image, int(size))
    except faces.NoFaceError as e:
        raise gr.Error(f"{e} With frame \"center\" this endpoint returns the centre crop.") from None
    info = {"frame": found.frame, "size": found.size, "matrix": np.round(found.matrix, 6).tolist(), "face": None,
            "convention": "pixel indices (x, y): the centre of pixel (i, j) is (i, j)"}
    if found.face is not None:
        back = np.linalg.inv(found.matrix)
        crop = found.face

        def points(face):
            out = {k: np.round(getattr(face, k), 2).tolist() for k in ("eye_left", "eye_right", "mouth")}
            if face.landmarks is not None:
                out["landmarks"] = np.round(face.landmarks, 2).tolist()
            return out

        photo_face = crop.transformed(back)
        info["face"] = {"in_crop": points(crop), "in_photo": points(photo_face), "score": round(float(crop.score), 4)}
    return found.image, info


def create() -> None:
    """The endpoint's components, hidden."""
    with gr.Group(visible=False):
        photo = inputs.ImageInput(label="photo")
        frame = gr.Dropdown(list(FRAMES), value="ffhq", label="frame")
        size = gr.Number(256, precision=0, label="size (px)")
        crop = gr.Image(label="aligned crop", format="png")
        info = gr.JSON(label="alignment")
        button = gr.Button("Align")
    button.click(events.handler(align_face), [photo, frame, size], [crop, info], api_name="align_face")
