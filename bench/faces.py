"""Speed of faces/: detection + 68 landmarks + alignment of a 1024 px photo (goal < 150 ms on 2 cores).

    python bench/faces.py [--calls 20] [--size 256]

Photos (1024 px on the long side, from scikit-image): the astronaut (a ~180 px face), a close-up
of her face (a ~600 px face), the astronaut turned 30 degrees (found upright by HOG, landmarks
re-predicted on an upright patch), turned 60 degrees (found only on a turned copy) and the coffee
cup (no face: every turned copy is searched). Per photo: detect, align (to celebahq at --size), paste
(an RGB result back) and the parsing map, p50 and min over --calls calls after one warm-up, one
thread; then the same pipeline from 2 threads at once (dlib runs outside the GIL, one detector per
thread), as wall time per call; and `follow` (a video's next frame) against `detect`. Prints the CPU
model and the load average: the numbers are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faces  # noqa: E402
from faces import warp  # noqa: E402

GOAL_S = 0.150


def photos() -> dict[str, Image.Image]:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    big = astronaut.resize((1024, 1024), Image.LANCZOS)
    close = astronaut.crop((130, 20, 320, 210)).resize((1024, 1024), Image.LANCZOS)

    def turned(angle):
        c = 511.5
        return warp.resample(big, warp.rotation(-angle, (c, c)), (1024, 1024), pad="reflect")

    coffee = Image.fromarray(data.coffee())
    coffee = coffee.resize((1024, round(1024 * coffee.height / coffee.width)), Image.LANCZOS)
    return {"astronaut 1024": big, "close-up 1024": close, "turned 30 deg": turned(30), "turned 60 deg": turned(60),
            "no face (coffee) 1024x683": coffee}


def pipeline(photo, size):
    """The app's path: detect, align the largest face, paste a result back, parsing in the crop."""
    t0 = time.perf_counter()
    found = faces.detect(photo)
    t1 = time.perf_counter()
    if not found:
        return t1 - t0, 0.0, 0.0, 0.0
    aligned = faces.align(photo, found[0], size, "celebahq")
    t2 = time.perf_counter()
    aligned.paste(aligned.image)
    t3 = time.perf_counter()
    faces.parsing_from_landmarks(aligned.face, (size, size))
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3


def _timed(function, *args) -> float:
    t = time.perf_counter()
    function(*args)
    return time.perf_counter() - t


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="timed calls per photo (after one warm-up)")
    parser.add_argument("--size", type=int, default=256, help="side of the aligned crop")
    args = parser.parse_args(argv)

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average before: "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    t = time.perf_counter()
    faces.detect(np.zeros((64, 64, 3), np.uint8))
    print(f"first call (loads the 68-point model and a detector): {time.perf_counter() - t:.2f} s")
    print(f"\n1 thread, {args.calls} calls per photo, ms (p50 / min); goal: detect + align < {GOAL_S * 1000:.0f} ms")
    print("| photo | faces | detect + landmarks | align | detect + align | paste | parsing |")
    print("|---|---|---|---|---|---|---|")
    cases = photos()
    for name, photo in cases.items():
        found = faces.detect(photo)
        pipeline(photo, args.size)
        times = np.array([pipeline(photo, args.size) for _ in range(args.calls)]) * 1000
        both = times[:, 0] + times[:, 1]

        def cell(v):
            return f"{np.median(v):.0f} / {v.min():.0f}"

        mark = " ok" if np.median(both) < GOAL_S * 1000 else " **over**"
        print(f"| {name} | {len(found)} (turned {found[0].angle:g})" if found else f"| {name} | 0", end="")
        print(f" | {cell(times[:, 0])} | {cell(times[:, 1])} | {cell(both)}{mark} | {cell(times[:, 2])} | "
              f"{cell(times[:, 3])} |")

    print("\nvideo: `follow` (the last frame's face searched again around where it was) instead of `detect`:")
    print("| photo | detect ms (p50 / min) | follow ms (p50 / min) |")
    print("|---|---|---|")
    for name in ("astronaut 1024", "close-up 1024", "turned 30 deg"):
        photo = cases[name]
        face = faces.detect(photo)[0]
        det = np.array([_timed(faces.detect, photo) for _ in range(args.calls)]) * 1000
        fol = np.array([_timed(faces.follow, photo, face) for _ in range(args.calls)]) * 1000
        print(f"| {name} | {np.median(det):.0f} / {det.min():.0f} | {np.median(fol):.0f} / {fol.min():.0f} |")

    print(f"\n2 threads at once, {args.calls} calls each, detect + align + paste + parsing:")
    print("| photo | wall ms per call (2 threads) | 1 thread ms per call |")
    print("|---|---|---|")
    for name in ("astronaut 1024", "close-up 1024", "turned 30 deg"):
        photo = cases[name]
        start = threading.Barrier(3)

        def work(warm_up=True):
            if warm_up:  # a new thread makes its own detector (~0.2 s) before the clock starts
                pipeline(photo, args.size)
                start.wait()
            for _ in range(args.calls):
                pipeline(photo, args.size)

        t = time.perf_counter()
        work(warm_up=False)
        single = (time.perf_counter() - t) / args.calls
        threads = [threading.Thread(target=work) for _ in range(2)]
        for th in threads:
            th.start()
        start.wait()
        t = time.perf_counter()
        for th in threads:
            th.join()
        both = (time.perf_counter() - t) / (2 * args.calls)
        print(f"| {name} | {both * 1000:.0f} | {single * 1000:.0f} |")
    print(f"\nload average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
