"""Rendering rate of the synthetic categories (images per second) and their anti-aliasing error.

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
    print("| category | pose | resolution | images/s | ms/image |")
    print("|---|---|---|---|---|")
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
    print()
    print("Anti-aliasing: mean absolute error (0-255) to a 4x4 supersampled render, 64x64, no noise")
    print("| category | one sample per pixel (ours) | point sampling |")
    print("|---|---|---|")
    for name in synthetic.CATEGORIES:
        s = synthetic.sample_structures(name, 64, 0)
        t = synthetic.sample_textures(name, 64, 0)
        t[:, synthetic.texture_names(synthetic.category(name)).index("noise_sigma")] = 0
        image = synthetic.render(name, s, t, 64).image.astype(float)
        big = synthetic.render(name, s, t, 256).image.astype(float)
        reference = big.reshape(64, 64, 4, 64, 4, 3).mean((2, 4))
        point = big[:, 2::4, 2::4]
        print(f"| {name} | {abs(image - reference).mean():.2f} | {abs(point - reference).mean():.2f} |")


if __name__ == "__main__":
    main()
