"""Face photos into the face models' frames and back: detect, 68 landmarks, align, paste, parsing.

>>> import numpy as np, faces
>>> face = faces.Face(eye_left=(90.0, 100.0), eye_right=(150.0, 100.0), mouth=(120.0, 160.0))
>>> aligned = faces.align(np.zeros((240, 240, 3), np.uint8), face, size=128, frame="ffhq")
>>> aligned.image.size, [round(v, 2) for v in aligned.face.eye_left]
((128, 128), [47.5, 60.3])

For a photo: `faces.detect(photo)` (largest face first, [] when none) or `faces.align_largest`
(raises `faces.NoFaceError`, whose message offers `faces.center_crop`); run the model on
`aligned.image`; `aligned.paste(result)` puts the result back onto the photo. See README.md.
"""

from .align import Aligned, NoFaceError, align, align_largest, center_crop
from .detect import Face, detect, follow
from .frames import FRAMES, Frame
from .parsing import FACE_PALETTE, FACE_PARTS, parsing_from_landmarks
from .track import FaceTrack

__all__ = ["FACE_PALETTE", "FACE_PARTS", "FRAMES", "Aligned", "Face", "FaceTrack", "Frame", "NoFaceError", "align",
           "align_largest", "center_crop", "detect", "follow", "parsing_from_landmarks"]
