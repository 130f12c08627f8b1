"""Following one face through a video: the detector every few frames, the landmarks every frame.

dlib's detector is most of what finding a face costs (~6 ms on a 256 px frame's patch, against
~1.6 ms for the 68 landmarks), and between two frames a face moves little: so `FaceTrack` runs the
landmark predictor alone on most frames (its box moved with the face, `follow(search=False)`) and
lets the detector confirm the face on every `check_every`-th frame (`follow(search=True)`), which
catches a scene cut or a face that left within that many frames. A lost face is searched anew in
the whole frame (`detect`), with the turned retries only on the first frame: a video whose face is
not upright there would pay ~150 ms a frame for nothing.
"""

from __future__ import annotations

from .detect import RETRY_ANGLES, Face, detect, follow

CHECK_EVERY = 8  # frames between the detector's checks of a followed face (~0.27 s at 30 fps)


class FaceTrack:
    """Call it on each frame of a video in turn: that frame's face (the largest when it was found
    anew), or None when there is none.

    >>> track = FaceTrack()
    >>> [track(frame) for frame in frames]  # doctest: +SKIP
    """

    def __init__(self, check_every: int = CHECK_EVERY, angles=RETRY_ANGLES):
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"check_every must be an int >= 1 (1: the detector on every frame), got {check_every!r}")
        self.check_every, self.angles = check_every, tuple(angles)
        self.face: Face | None = None
        self._unchecked = 0  # frames followed by the predictor alone since the detector last saw the face

    def __call__(self, frame) -> Face | None:
        if self.face is not None:
            check = self._unchecked + 1 >= self.check_every
            face = follow(frame, self.face, search=check)
            if face is None and not check:  # the landmarks jumped: let the detector look
                face, check = follow(frame, self.face), True
            self.face, self._unchecked = face, 0 if check else self._unchecked + 1
        if self.face is None:
            found = detect(frame, angles=self.angles)
            self.face, self.angles, self._unchecked = (found[0] if found else None), (), 0
        return self.face
