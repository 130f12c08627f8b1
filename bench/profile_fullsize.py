"""Where the time goes in the authors' full-size networks on a CPU: torch.profiler's top operators
(self CPU time) for one call of each pipeline, random weights, fp32.

    OMP_NUM_THREADS=1 python bench/profile_fullsize.py [--cases cocosnet-celebahq gangealing-cat coordgan-128-generate]
        [--threads 1 2] [--rows 15] [--modules]

The cases are bench/fullsize.py's (same inputs, same calls). `--flops` counts the floating-point
operations instead (the floor any fp32 code has to pay). `--baseline GIT_REF` profiles that
commit's packages (the "before" of bench/README.md). `--modules` also prints the time of each
top-level child module (forward hooks), which is how bench/README.md's breakdown was made.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench.fullsize import CASES, build_case, load_baseline  # noqa: E402


def module_times(roots: dict, call) -> dict:
    """Seconds spent in each direct child of the given modules during one call (forward hooks)."""
    totals, handles = collections.defaultdict(float), []
    for root_name, root in roots.items():
        for name, module in [(root_name, root), *[(f"{root_name}.{n}", m) for n, m in root.named_children()]]:
            start = {}
            handles.append(module.register_forward_pre_hook(lambda *a,
                                                            s=start: s.__setitem__("t", time.perf_counter())))
            handles.append(module.register_forward_hook(
                lambda *a, s=start, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - s["t"])))
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return dict(totals)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+",
                   default=["cocosnet-celebahq", "gangealing-cat", "coordgan-128-generate", "coordgan-128-propagate"],
                   choices=list(CASES))
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--rows", type=int, default=15, help="operators shown per case")
    p.add_argument("--modules", action="store_true", help="also time each top-level child module")
    p.add_argument("--shapes", action="store_true", help="group the operators by input shape")
    p.add_argument("--flops", action="store_true",
                   help="only count the call's floating-point operations (FlopCounterMode)")
    p.add_argument("--baseline", default=None, metavar="GIT_REF", help="profile the packages of this commit instead")
    args = p.parse_args(argv)
    packages = load_baseline(args.baseline) if args.baseline else None
    for name in args.cases:
        case = build_case(name, "fp32", packages)
        if args.flops:
            with FlopCounterMode(display=False) as counter:
                case.call()
            top = sorted(counter.get_flop_counts()["Global"].items(), key=lambda kv: -kv[1])[:4]
            with FlopCounterMode(display=False) as again:
                case.call()  # the same call again: what caches (CoCosNet's exemplar side) save
            print(f"{name}: {counter.get_total_flops() / 1e9:.1f} GFLOP ("
                  + ", ".join(f"{str(op).split('.')[1]} {n / 1e9:.1f}" for op, n in top)
                  + f"); repeated call {again.get_total_flops() / 1e9:.1f} GFLOP")
            continue
        for threads in args.threads:
            torch.set_num_threads(threads)
            case.call()  # warm-up (allocations, oneDNN primitive caches)
            start = time.perf_counter()
            case.call()
            wall = time.perf_counter() - start
            print(f"\n## {name}, {threads} thread(s): {wall:.3f} s per call")
            with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
                case.call()
            table = prof.key_averages(group_by_input_shape=args.shapes)
            print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40,
                              max_shapes_column_width=70))
            if args.modules:
                for module, seconds in module_times(case.modules, case.call).items():
                    print(f"{module:40s} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
