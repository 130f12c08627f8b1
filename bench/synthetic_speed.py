"""Rendering rate of the synthetic categories (images per second), as a table.

    python bench/synthetic_speed.py [--n 2000] [--repeats 3]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import synthetic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row (best is shown)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128], help="image sides")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}")
    print(f"| category | pose | resolution | images/s | ms/image |")
    print(f"|---|---|---|---|---|")
    for name in synthetic.CATEGORIES:
        for pose in synthetic.POSES:
            for r in args.resolutions:
                s = synthetic.sample_structures(name, args.n, 0, pose)
                t = synthetic.sample_textures(name, args.n, 0)
                best = float("inf")
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    synthetic.render(name, s, t, r)
                    best = min(best, time.perf_counter() - start)
                print(f"| {name} | {pose} | {r} | {args.n / best:,.0f} | {1000 * best / args.n:.2f} |")


if __name__ == "__main__":
    main()
