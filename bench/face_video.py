"""What "Align the face" adds to edit propagation of a video (issue #24 item 5): a 60-frame 256 px
MP4 of a face moving across the frame (scikit-image's astronaut, panned and zoomed), edited by the
bundled GANgealing model through the tab's own function, with alignment off and on.

    python bench/face_video.py [--repeats 3] [--threads 2]

With alignment on, every frame's face is followed from the last (`faces.follow`; a full `detect`
when it is lost), aligned to the model's frame, edited and pasted back onto the frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demos import congealing, examples, face_photos, models  # noqa: E402
from demos.video import VideoReader, write_mp4  # noqa: E402

FRAMES, SIDE = 60, 256


def face_clip(folder: Path) -> tuple[str, str]:
    """(the clip, its first frame) as files: a 300 px window over the astronaut moving 40 px right
    and zooming 10 % over two seconds."""
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut())
    frames = []
    for t in np.linspace(0, 1, FRAMES):
        side = 300 * (1 - 0.1 * t)
        x0, y0 = 60 + 40 * t, 0
        frames.append(photo.crop((x0, y0, x0 + side, y0 + side)).resize((SIDE, SIDE), Image.LANCZOS))
    frames[0].save(folder / "frame.png")
    return write_mp4(frames, str(folder / "face_60f_256px.mp4"), Fraction(30)), str(folder / "frame.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (default 3), after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = models.load(models.SPECS["gangealing"])  # the bundled model: its frame is the synthetic faces'
    folder = Path(tempfile.mkdtemp(prefix="face-video-"))
    clip, first = face_clip(folder)
    edit = examples.path("edit_glasses.png")
    times = {False: [], True: []}
    for i in range(args.repeats + 1):  # interleaved, so a busy moment of the machine hits both
        for align in (False, True):
            start = time.perf_counter()
            with torch.inference_mode():
                congealing.propagate_edit(pipe, edit, first, None, clip, align_face=align)
            if i:
                times[align].append(time.perf_counter() - start)
    rows = [(align, float(np.median(t)), min(t)) for align, t in times.items()]
    alone = []  # the alignment's own work: follow / detect, align and paste back every frame, no model
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        store = deque()
        for _ in face_photos.pasted_frames(face_photos.frames(pipe, VideoReader(clip), True, store), store):
            pass
        if i:
            alone.append(time.perf_counter() - start)
    base = rows[0][1]
    print(f"60-frame {SIDE} px MP4 through congealing.propagate_edit (bundled GANgealing), {args.threads} threads, "
          f"p50 of {args.repeats}\n")
    print("| Align the face | p50 s | min s | added |")
    print("|---|---|---|---|")
    for align, p50, low in rows:
        print(f"| {'on' if align else 'off'} | {p50:.2f} | {low:.2f} | {100 * (p50 / base - 1):+.0f} % |")
    p50 = float(np.median(alone))
    print(f"| the alignment alone (follow, align, paste; no model) | {p50:.2f} | {min(alone):.2f} | "
          f"{100 * p50 / base:+.0f} % of off |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
