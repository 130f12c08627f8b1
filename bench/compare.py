"""PCK of every method and of the identity guess on synthetic pairs with exact correspondence.

    python bench/compare.py [--pairs 200] [--seed 1000] [--threads 2] [--json OUT.json]

Each pair: two faces of independent structure and texture rendered by `synthetic` at the app's
example size; the points are A's keypoints visible in both, their exact matches B's keypoints
(the same canonical points). Every method runs through `demos.compare.compare`, the function behind
the app's Compare tab and `/compare`, on the bundled checkpoints (or the folders given). PCK@alpha:
the share of matches within alpha x the long side of image B. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demos import compare, models  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="synthetic pairs (default 200)")
    parser.add_argument("--seed", type=int, default=1000, help="first pair's seed; pair i uses seed + i (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    for name, spec in models.SPECS.items():
        parser.add_argument(spec.flag, default=None, help=f"{name} model (default: {spec.default})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pipelines = models.load_all({name: getattr(args, name) for name in models.SPECS})
    errors, seconds = {}, {}
    start = time.perf_counter()
    sides = []
    for i in range(args.pairs):
        pair = compare.synthetic_pair(args.seed + i)
        points, truth = compare.exact_points(pair)
        a, b = Image.fromarray(pair.image[0]), Image.fromarray(pair.image[1])
        sides.append(max(b.size))
        with torch.inference_mode():
            results = compare.compare(pipelines, a, b, points, truth, pair.labels[0])
        for name, r in results.items():
            if "skipped" in r:
                continue
            errors.setdefault(name, []).append(np.asarray(r["error_px"]))
            seconds.setdefault(name, []).append(r["seconds"])
    side = max(sides)
    rows = {}
    print(f"{args.pairs} synthetic pairs ({side} px, seeds {args.seed}-{args.seed + args.pairs - 1}), "
          f"{time.perf_counter() - start:.0f} s, {args.threads} threads\n")
    print("| method | points | mean error px | " + " | ".join(f"PCK@{a}" for a in compare.PCK_ALPHAS)
          + " | s per pair (p50) |")
    print("|---|---|---|" + "---|" * len(compare.PCK_ALPHAS) + "---|")
    for name, errs in errors.items():
        e = np.concatenate(errs)
        pck = [float((e <= a * side).mean()) for a in compare.PCK_ALPHAS]
        p50 = float(np.median(seconds[name]))
        rows[name] = {"points": int(len(e)), "mean_error_px": float(e.mean()), "pck": pck, "seconds_p50": p50}
        print(f"| {name} | {len(e)} | {e.mean():.2f} | " + " | ".join(f"{p:.3f}" for p in pck) + f" | {p50:.3f} |")
    skipped = sorted(set(compare.METHODS) - set(errors))
    if skipped:
        print(f"\nnot run: {', '.join(skipped)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": args.pairs, "seed": args.seed, "side": side,
                                               "methods": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
