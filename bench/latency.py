"""Latency of the app's endpoints, one call at a time: start the app on its bundled checkpoints,
call each case through gradio_client (one warm-up call, then --calls timed calls) and print p50,
p95 and the range per case against its goal.

    python bench/latency.py [--calls 15] [--only /propagate_edit] [--json out.json]

A case is an `EndpointCase` in CASES: the endpoint, a function that writes its inputs once and
returns the call's arguments, a check of the result, and the goal in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import synthetic  # noqa: E402
from bench.load_app import running_app  # noqa: E402
from demos.video import write_mp4  # noqa: E402


@dataclass
class EndpointCase:
    api_name: str
    name: str
    make_args: Callable[[Path], tuple]  # writes its input files into the folder, returns the call's arguments
    check: Callable[[object], None]  # raises when a result is wrong
    goal_s: float


# ---------------------------------------------------------------- /propagate_edit: a 60-frame 256 px MP4
def propagate_edit_mp4(folder: Path) -> tuple:
    from gradio_client import handle_file

    frames = [Image.fromarray(im) for im in synthetic.sample("faces", 60, resolution=256, seed=4, pose="wide").image]
    clip = write_mp4(frames, str(folder / "clip_60f_256px.mp4"), Fraction(30))
    frames[0].save(folder / "frame.png")
    edit = np.zeros((64, 64, 4), np.uint8)  # RGBA on the congealed frame (any size: stretched over it)
    edit[20:28, 16:48] = [255, 0, 0, 255]
    Image.fromarray(edit).save(folder / "edit.png")
    return handle_file(str(folder / "edit.png")), handle_file(str(folder / "frame.png")), [], handle_file(clip)


def mp4_of_60_frames(result) -> None:
    import av

    with av.open(result[2]) as container:
        n = sum(1 for _ in container.decode(container.streams.video[0]))
    if n != 60:
        raise AssertionError(f"the edited video has {n} frames, not 60")


# ---------------------------------------------------------------- /match_points: 3 points, a 256 px pair, per method
def match_points_args(method: str) -> Callable[[Path], tuple]:
    def make(folder: Path) -> tuple:
        from gradio_client import handle_file

        batch = synthetic.sample("faces", 2, resolution=256, seed=6, pose="medium")
        a, b = folder / f"{method}_a.png", folder / f"{method}_b.png"
        if method == "cocosnet":  # image A is the input label map (index PNG)
            Image.fromarray(batch.labels[0].astype(np.uint8), "L").save(a)
        else:
            Image.fromarray(batch.image[0]).save(a)
        Image.fromarray(batch.image[1]).save(b)
        return method, handle_file(str(a)), handle_file(str(b)), "[[128, 100], [90, 140], [170, 140]]", None

    return make


def three_matches(result) -> None:
    if len(result["points"]) != 3 or len(result["confidence"]) != 3:
        raise AssertionError(f"expected 3 matches, got {result}")


CASES = [
    EndpointCase("/propagate_edit", "MP4, 60 frames, 256 px, 30 fps", propagate_edit_mp4, mp4_of_60_frames, 10.0),
    *[EndpointCase("/match_points", f"{method}: 3 points, 256 px images", match_points_args(method), three_matches, 0.3)
      for method in ("coordgan", "gangealing", "cocosnet", "coat")],
]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=15, help="timed calls per case (after one warm-up call)")
    p.add_argument("--only", action="append", default=None, help="run only this endpoint's cases (repeatable)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    from gradio_client import Client

    cases = [c for c in CASES if not args.only or c.api_name in args.only]
    folder = Path(tempfile.mkdtemp(prefix="latency_"))
    rows = []
    with running_app() as (url, _):
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 600})
        for case in cases:
            call_args = case.make_args(folder)
            case.check(client.predict(*call_args, api_name=case.api_name))  # warm-up, and a checked result
            times = []
            for _ in range(args.calls):
                start = time.perf_counter()
                client.predict(*call_args, api_name=case.api_name)
                times.append(time.perf_counter() - start)
            p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
            rows.append(dict(endpoint=case.api_name, case=case.name, calls=len(times), p50_s=p50, p95_s=p95,
                             min_s=min(times),
                             max_s=max(times), goal_s=case.goal_s, met=bool(p50 < case.goal_s)))
    print(f"{os.cpu_count()} CPUs, torch threads as the app sets them; one call at a time\n")
    print("| endpoint | case | calls | p50 s | p95 s | min s | max s | goal (p50) |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = "met" if r["met"] else "missed"
        print(f"| {r['endpoint']} | {r['case']} | {r['calls']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
              f"{r['min_s']:.2f} | "
              f"{r['max_s']:.2f} | < {r['goal_s']:g} s: {verdict} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return {"cases": rows}


if __name__ == "__main__":
    main()
