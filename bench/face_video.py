"""What "Align the face" adds to edit propagation of a video (issue #24 item 5): a 60-frame 256 px
MP4 of a face moving across the frame (scikit-image's astronaut, panned and zoomed), edited by the
GANgealing model through the tab's own function, with alignment off and on.

    python bench/face_video.py [--repeats 3] [--threads 2] [--model bundled|paper]

--model bundled: the bundled model (synthetic faces, 128 px edit, a small transformer: ~5 ms a
frame, so the alignment's fixed cost weighs most); paper: the authors' celeba architecture (the
paper transformer, random weights: the time does not depend on them; celeba frame). With alignment
on, every frame's face is followed from the last (`faces.FaceTrack`: the landmarks every frame, the
detector every 8th), aligned to the model's frame, edited and pasted back onto the frame. A second
table splits the "on" call's added time into those three steps, timed around the functions the tab
calls.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
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
STAGES = ("following the face (FaceTrack)", "aligning the frame (faces.align)",
          "pasting the result back (Aligned.paste)")


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


def paper_pipeline():
    """GANgealing with the authors' celeba transformer (the paper configuration, random weights with small
    random warp heads, so the warps are not the identity), marked as the celeba release for the face frame."""
    import gangealing as g

    torch.manual_seed(0)
    transformer = g.SpatialTransformer(**g.TRANSFORMER_CONFIGS["paper"])
    with torch.no_grad():
        transformer.stns[0].warp_head.linear.weight.normal_(0, 0.01)
        transformer.stns[1].warp_head.flow_out[2].weight.normal_(0, 0.01)
    generator = g.StyleGAN2Generator(**g.GENERATOR_CONFIGS["micro"])  # not used by edit propagation
    target = g.LearnedTarget(num_directions=1, num_latents=generator.num_latents, inject_index=4,
                             style_dim=generator.style_dim)
    pipe = g.GANgealingPipeline(generator.eval(), transformer.eval(), target.eval(), None)
    return models._mark(pipe, kind="release", source="gangealing:celeba")


def tracking_table(clip: str, repeats: int) -> None:
    """Following the clip's face: the detector on every frame's patch (FaceTrack(check_every=1)) against
    FaceTrack's default (the predictor alone between checks): ms a frame, and how far the eye centres of
    the two tracks lie apart."""
    import faces

    frames = list(VideoReader(clip))
    tracks, times = {}, {}
    for every in (1, faces.track.CHECK_EVERY):
        runs = []
        for _ in range(repeats):
            track = faces.FaceTrack(check_every=every)
            track(frames[0])  # the first frame's full search, the same for both
            start = time.perf_counter()
            found = [track(frame) for frame in frames[1:]]
            runs.append((time.perf_counter() - start) / len(found))
        tracks[every], times[every] = found, runs
    eyes = lambda face: np.array([face.eye_left, face.eye_right])  # noqa: E731
    apart = [np.abs(eyes(a) - eyes(b)).max() for a, b in zip(tracks[1], tracks[faces.track.CHECK_EVERY])]
    print("\n| following the face (frames 2-60) | ms a frame (p50 / min) | eye centres vs the detector every frame |")
    print("|---|---|---|")
    for every, runs in times.items():
        what = ("the detector on every frame's patch" if every == 1
                else f"FaceTrack: landmarks alone, the detector every {every}th frame")
        gap = "" if every == 1 else f"max {max(apart):.2f} px, mean {np.mean(apart):.2f} px"
        print(f"| {what} | {1000 * np.median(runs):.1f} / {1000 * min(runs):.1f} | {gap} |")


@contextlib.contextmanager
def stage_times(totals: dict):
    """Adds to `totals` the seconds the tab's face steps take while the block runs (following the face,
    aligning the frame, pasting the result back), timed around the very functions demos.face_photos calls."""
    import faces

    def timed(owner, name, key):
        fn = getattr(owner, name)

        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
        return fn, run

    patches = zip([(faces.FaceTrack, "__call__"), (faces, "align"), (faces.Aligned, "paste")], STAGES)
    saved = []
    for (owner, name), key in patches:
        fn, run = timed(owner, name, key)
        saved.append((owner, name, fn))
        setattr(owner, name, run)
    try:
        yield totals
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def stages_table(pipe, edit, first, clip, repeats: int, base: float) -> None:
    """Where the added time goes: each face step's ms a frame inside the "on" call, and its share of
    the "off" call's whole time (`base`, s)."""
    runs = []
    for _ in range(repeats):
        with torch.inference_mode(), stage_times({}) as totals:
            congealing.propagate_edit(pipe, edit, first, None, clip, align_face=True)
        runs.append(totals)
    print("\n| step of the \"on\" call | ms a frame (p50) | share of the \"off\" call's time |")
    print("|---|---|---|")
    for key in sorted(runs[0], key=STAGES.index):
        seconds = float(np.median([r[key] for r in runs]))
        print(f"| {key} | {1000 * seconds / FRAMES:.2f} | {100 * seconds / base:.0f} % |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (default 3), after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--model", choices=("bundled", "paper"), default="bundled",
                        help="the bundled model (default) or the authors' celeba architecture")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # the bundled model's frame is the synthetic faces'; the paper model's the celeba release's
    pipe = models.load(models.SPECS["gangealing"]) if args.model == "bundled" else paper_pipeline()
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
    base = rows[0][1]
    print(f"60-frame {SIDE} px MP4 through congealing.propagate_edit ({args.model} GANgealing, "
          f"{face_photos.frame_for(pipe)} frame), {args.threads} threads, p50 of {args.repeats}\n")
    print("| Align the face | p50 s | min s | added |")
    print("|---|---|---|---|")
    for align, p50, low in rows:
        print(f"| {'on' if align else 'off'} | {p50:.2f} | {low:.2f} | {100 * (p50 / base - 1):+.0f} % |")
    stages_table(pipe, edit, first, clip, args.repeats, base)
    tracking_table(clip, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
