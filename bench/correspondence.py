"""Time and peak memory of CoordGAN's correspondence primitives: the dense (HW x HW) formulas
against coordgan.correspondence (tiled attention, never HW x HW).

    python bench/correspondence.py [--sizes 64 128 256 512] [--dense-sizes 64 128] [--repeats 3]

Each row runs in its own subprocess. Memory is the peak resident set size of that process during
the operation minus its resident size just before (Linux: the peak is reset by writing 5 to
/proc/self/clear_refs, then read from VmHWM in /proc/self/status), so it counts everything the
operation allocates (torch's CPU allocator returns large blocks to the OS) and nothing the imports
or inputs took. Time is the best of --repeats runs (dense rows at 128 and above run once); the
first run is the one measured for memory. The error column compares the float32 output with an
exact float64 computation (direct differences, in row chunks) on up to 2048 target pixels; for
the Chamfer rows, the loss value (exact reference up to 128x128 only).

On a machine shared with another busy process, intra-op threads wait for each other at every
parallel region (a few ms each), which punishes the tiled form's many small ops; --threads 1
measures the algorithms rather than the scheduler.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from coordgan.correspondence import DEFAULT_TEMPERATURE, canonical_grid, chamfer_distance, soft_warp  # noqa: E402

OPS = {
    "warp": "soft_warp, C=3, forward",
    "warp_grad": "soft_warp, C=3, forward+backward",
    "labels": "label probabilities, C=num_classes, forward",
    "chamfer": "chamfer_distance (eq. 7), forward+backward",
}


# ----------------------------------------------------------------------------- the dense formulas


def dense_soft_warp(values, source_coords, target_coords, temperature):
    """softmax(-cdist^2 / t) @ values with the full (HW x HW) matrix."""
    b, c = values.shape[:2]
    a, s = target_coords.flatten(2).transpose(1, 2), source_coords.flatten(2).transpose(1, 2)
    weights = torch.softmax(-torch.cdist(a, s).square() / temperature, -1)  # (B, M, N)
    out = weights @ values.flatten(2).transpose(1, 2)  # (B, M, C)
    return out.transpose(1, 2).reshape(b, c, *target_coords.shape[-2:])


def dense_chamfer(coords_a, coords_b):
    d = torch.cdist(coords_a.flatten(2).transpose(1, 2), coords_b.flatten(2).transpose(1, 2))  # (B, N, M)
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


# ----------------------------------------------------------------------------- one row (subprocess)


def inputs(size, num_classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    grid = canonical_grid(size, size)[None]  # (1, 2, H, W)

    def warped():
        matrix = torch.eye(2) + 0.15 * torch.randn(2, 2, generator=g)
        bend = 0.08 * torch.sin(3 * grid.flip(1) + 6.28 * torch.rand(1, 2, 1, 1, generator=g))
        return torch.tanh(torch.einsum("ij,bjhw->bihw", matrix, grid) + bend)

    source, target = warped(), warped()
    image = torch.rand(1, 3, size, size, generator=g)
    labels = torch.randint(0, num_classes, (1, size, size), generator=g)
    return source, target, image, labels


def make_op(op, form, size, num_classes, temperature):
    source, target, image, labels = inputs(size, num_classes)
    warp = dense_soft_warp if form == "dense" else soft_warp
    if op == "warp":
        return lambda: warp(image, source, target, temperature)
    if op == "labels":
        one_hot = torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
        return lambda: warp(one_hot, source, target, temperature)
    if op == "warp_grad":

        def run():
            x, s, t = (y.clone().requires_grad_() for y in (image, source, target))
            out = warp(x, s, t, temperature)
            out.square().mean().backward()
            return out.detach()

        return run
    if op == "chamfer":
        grid = canonical_grid(size, size)[None]
        chamfer = dense_chamfer if form == "dense" else chamfer_distance

        def run():
            s = source.clone().requires_grad_()
            loss = chamfer(grid, s)
            loss.sum().backward()
            return loss.detach()

        return run
    raise ValueError(op)


def memory_probe():
    """(reset peak, read current and peak in bytes) using /proc; falls back to getrusage."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

        def read(field):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field):
                        return int(line.split()[1]) * 1024
            raise OSError(field)

        return "VmHWM", lambda: read("VmRSS:"), lambda: read("VmHWM:")
    except OSError:
        import resource

        def current():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        return "ru_maxrss", current, lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def exact_error(op, size, num_classes, temperature, out):
    """Max abs difference of `out` from an exact float64 computation (None when too costly)."""
    source, target, image, labels = (x.double() if x.is_floating_point() else x for x in inputs(size, num_classes))
    if op == "chamfer":
        if size > 128:
            return None
        grid = canonical_grid(size, size, dtype=torch.float64).flatten(1).t()  # (N, 2)
        warped = source[0].flatten(1).t()
        nearest = [torch.full((len(x),), float("inf"), dtype=torch.float64) for x in (grid, warped)]
        for i in range(0, len(grid), 1024):  # both directions, chunk by chunk
            d = torch.cdist(grid[i : i + 1024], warped)
            nearest[0][i : i + 1024] = d.min(1).values
            nearest[1] = torch.minimum(nearest[1], d.min(0).values)
        return abs(out.double().sum().item() - (nearest[0].mean() + nearest[1].mean()).item())
    values = torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).double() if op == "labels" else image
    a = target.flatten(2).transpose(1, 2)[0]  # (M, 2)
    b, v = source.flatten(2).transpose(1, 2)[0], values.flatten(2).transpose(1, 2)[0]  # (N, 2), (N, C)
    rows = torch.randperm(len(a), generator=torch.Generator().manual_seed(1))[:2048]
    step = max(1, 2**22 // len(b))
    exact = torch.cat([torch.softmax(-(a[rows[i : i + step], None] - b[None]).square().sum(-1) / temperature, -1) @ v
                       for i in range(0, len(rows), step)])  # (rows, C)
    return (out.double().flatten(2).transpose(1, 2)[0, rows] - exact).abs().max().item()


def row(args):
    torch.set_num_threads(args.threads)
    fn = make_op(args.op, args.form, args.size, args.num_classes, args.temperature)
    method, current, peak = memory_probe()
    before = current()
    start = time.perf_counter()
    out = fn()
    times = [time.perf_counter() - start]
    extra = peak() - before
    repeats = 1 if args.form == "dense" and args.size >= 128 else args.repeats
    for _ in range(repeats - 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    error = exact_error(args.op, args.size, args.num_classes, args.temperature, out)
    print(json.dumps({"time": min(times), "memory": extra, "method": method, "error": error}))


# ----------------------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512],
                        help="map sides for the efficient form")
    parser.add_argument("--dense-sizes", type=int, nargs="*", default=[64, 128],
                        help="map sides for the dense form too (none: skip it)")
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=list(OPS), help="operations to measure")
    parser.add_argument("--num-classes", type=int, default=8, help="channels of the label rows")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="soft warp temperature")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row (best is shown)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--form", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        return row(args)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, threads: {args.threads}, cpus: {os.cpu_count()}, "
          f"load average at start: {load:.2f}, temperature: {args.temperature:g}, num_classes: {args.num_classes}")
    print()
    print("| operation | map | form | time (s) | peak extra memory (MiB) | max abs error vs float64 |")
    print("|---|---|---|---|---|---|")
    method = None
    for op in args.ops:
        for size in sorted(set(args.sizes) | set(args.dense_sizes)):
            for form in ("dense", "efficient"):
                if ((form == "dense" and size not in args.dense_sizes)
                        or (form == "efficient" and size not in args.sizes)):
                    continue
                command = [sys.executable, os.path.abspath(__file__), "--row", "--op", op, "--form", form,
                           "--size", str(size), "--num-classes", str(args.num_classes), "--threads", str(args.threads),
                           "--temperature", str(args.temperature), "--repeats", str(args.repeats)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
                    print(f"| {OPS[op]} | {size}x{size} | {form} | failed: {reason[:80]} | | |", flush=True)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                method = result["method"]
                error = "" if result["error"] is None else f"{result['error']:.1e}"
                print(f"| {OPS[op]} | {size}x{size} | {form} | {result['time']:.3f} | "
                      f"{result['memory'] / 2**20:,.0f} | {error} |", flush=True)
    print()
    print(f"Memory: peak RSS during the call minus RSS before it, per subprocess ({method}).")


if __name__ == "__main__":
    main()
