"""CoCosNet's warp (eq. 4): chunked attention vs the dense (HW x HW) softmax, time and agreement.

    OMP_NUM_THREADS=1 python bench/cocosnet_warp.py --sizes 32 64 128 --dense-max 64

Features as in the paper configs: 256 channels unfolded 3x3 (2304-d), alpha = 100, values = a
3-channel exemplar (plus, optionally, a mask). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cocosnet.correspondence import correlation_features, dense_warp, soft_warp  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], help="correspondence resolutions (H = W)")
    p.add_argument("--channels", type=int, default=256, help="feature channels before the 3x3 unfold")
    p.add_argument("--dense-max", type=int, default=64, help="largest size at which the dense formula is run")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| H x W | positions | attention s | dense s | dense matrix MiB | max abs diff |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        g = torch.Generator().manual_seed(size)
        a, b = torch.randn(1, args.channels, size, size,
                           generator=g), torch.randn(1, args.channels, size, size, generator=g)
        values = torch.rand(1, 3, size, size, generator=g) * 2 - 1
        with torch.inference_mode():
            q, k = correlation_features(a), correlation_features(b)
            t = time.perf_counter()
            fast = soft_warp(q, k, values)
            t_fast = time.perf_counter() - t
            n = size * size
            if size <= args.dense_max:
                t = time.perf_counter()
                dense = dense_warp(q, k, values)
                t_dense = time.perf_counter() - t
                diff = f"{(fast - dense).abs().max().item():.1e}"
                t_dense = f"{t_dense:.2f}"
            else:
                t_dense, diff = "skipped", "-"
        print(f"| {size} x {size} | {n} | {t_fast:.2f} | {t_dense} | {n * n * 4 / 2**20:.0f} | {diff} |")


if __name__ == "__main__":
    main()
