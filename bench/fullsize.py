"""The authors' full-size networks on this machine: latency (p50 of the pipeline call), peak memory
and error against fp32, per model, precision and thread count. Random weights (the time does not
depend on them); fixed, realistic inputs (a face parsing map, a scene map, a pose, a photo-like exemplar).

    python bench/fullsize.py --quick           # issue #26's three cases, fp32 / mixed / bf16 at 2 threads (~5 min)
    python bench/fullsize.py --cases cocosnet-celebahq --precisions fp32 mixed bf16 --threads 1 2 --repeats 5
    OMP_NUM_THREADS=1 python bench/fullsize.py --fixtures   # fp32 / mixed / bf16 errors on the authors' recorded
                                                            # inputs, all three packages (~5 min at 1 thread)
    python bench/fullsize.py --training --threads 1             # training scripts, s/step fp32 vs bf16 (~10 min)
    python bench/fullsize.py --baseline HEAD~3 --cases cocosnet-celebahq   # also time that commit's packages,
                                                                           # interleaved

Precisions: fp32; bf16 / fp16 (CPU autocast); mixed: bf16 autocast with the package's fp32 policy
(<package>/precision.py, what `--precision mixed` runs in the app). Columns: p50 / min seconds of the
call, its speed-up over the fp32 row at the same thread count (p50 / p50), peak resident memory above
the level before the call (sampled every 2 ms), and max / mean abs difference and PSNR (images in
[-1, 1], peak-to-peak 2) of the output against the fp32 output of the current code. With
--baseline the old code's output is compared too, and its speed-up is the ratio of the medians of
interleaved old/new calls.
Warm exemplar: CoCosNet caches the exemplar's features, so the `-new-exemplar` rows change the
exemplar on every call (the cost of a first call) and the plain rows repeat it (a user editing the map).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

PACKAGES = ("cocosnet", "gangealing", "coordgan")
PRECISIONS = ("fp32", "mixed", "bf16", "fp16")
QUICK_CASES = ("cocosnet-celebahq", "gangealing-cat", "coordgan-128-generate")  # the cases of issue #26's goal
QUICK_FIXTURES = ("cocosnet-celebahq", "gangealing-cat", "coordgan-128")  # their authors' recorded calls
CASES = {
    "cocosnet-celebahq": "CoCosNet celebahq, 256 px translation (19-class face map + exemplar and its map)",
    "cocosnet-celebahq-new-exemplar": "the same, a different exemplar on every call",
    "cocosnet-ade20k": "CoCosNet ade20k, 256 px translation (151-class scene map)",
    "cocosnet-deepfashion": "CoCosNet deepfashion, 256 px translation (18 pose keypoints)",
    "gangealing-cat": "GANgealing paper transformer (K = 1, 3 similarity iterations), congeal one 256 px "
                      "image with flip",
    "coordgan-128-generate": "CoordGAN 128 px (celebA_128 layout), generate one image + correspondence map",
    "coordgan-128-propagate": "CoordGAN 128 px + the authors' encoder, label propagation to one query",
    "coordgan-512-generate": "CoordGAN 512 px (celebA_512 layout), generate one image at 512 px",
}


# ------------------------------------------------------------------ inputs


def face_labels(size: int = 256, shift: int = 0) -> np.ndarray:
    """A CelebAMask-HQ-like parsing map (ids 0..18): face, hair, eyes, brows, nose, lips, ears, neck."""
    yy, xx = np.mgrid[:size, :size] / size
    lab = np.zeros((size, size), np.int64)
    ell = lambda cx, cy, rx, ry: ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1  # noqa: E731
    c = 0.5 + shift / size
    lab[ell(c, 0.45, 0.34, 0.42)] = 13  # hair
    lab[(yy > 0.7) & (np.abs(xx - c) < 0.14)] = 17  # neck
    lab[ell(c, 0.52, 0.26, 0.33)] = 1  # skin
    lab[ell(c - 0.27, 0.52, 0.04, 0.08) | ell(c + 0.27, 0.52, 0.04, 0.08)] = 7  # ears
    lab[ell(c - 0.1, 0.45, 0.05, 0.025)] = 4
    lab[ell(c + 0.1, 0.45, 0.05, 0.025)] = 5  # eyes
    lab[ell(c - 0.1, 0.39, 0.06, 0.015)] = 2
    lab[ell(c + 0.1, 0.39, 0.06, 0.015)] = 3  # brows
    lab[ell(c, 0.56, 0.035, 0.07)] = 10  # nose
    lab[ell(c, 0.69, 0.08, 0.02)] = 12
    lab[ell(c, 0.71, 0.07, 0.015)] = 11  # lips
    return lab


def scene_labels(size: int = 256, seed: int = 0) -> np.ndarray:
    """An ADE20k-like map: 14 Voronoi regions with class ids in 0..150."""
    rng = np.random.default_rng(seed)
    centres, ids = rng.uniform(0, size, (14, 2)), rng.integers(1, 151, 14)
    yy, xx = np.mgrid[:size, :size]
    d = (xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2
    return ids[d.argmin(-1)].astype(np.int64)


def photo(size: int = 256, seed: int = 0) -> Image.Image:
    """A photo-like exemplar: smooth colour gradients, a few discs and fine noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f * xx + g * yy) + p) for f, g, p in rng.uniform(0, 2, (3, 3))], -1)
    for cx, cy, r, *col in rng.uniform(0, 1, (6, 6)):
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < (0.3 * r) ** 2] = col
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    return Image.fromarray((img * 255).astype(np.uint8))


POSE = np.array([[128, 40], [128, 70], [100, 72], [92, 110], [88, 145], [156, 72], [164, 110], [168, 145], [110, 150],
                 [108, 200], [106, 245], [146, 150], [148, 200], [150, 245], [122, 34], [134, 34], [114, 38],
                 [142, 38]], np.float64)


# ------------------------------------------------------------------ cases


@dataclass
class Case:
    call: object  # () -> anything: the timed pipeline call
    output: object  # () -> tensor: the output compared across precisions / code versions
    modules: dict = field(default_factory=dict)  # name -> nn.Module, for bench/profile_fullsize.py --modules
    exemplars: list = field(default_factory=list)
    close: object = lambda: None  # undoes what the precision changed on the modules (the mixed policy)


def _eval(*modules):
    for m in modules:
        if m is not None:
            m.eval()


def build_case(name: str, precision: str = "fp32", packages: dict | None = None) -> Case:
    """The pipeline and inputs of one CASES entry, built with random weights (seed 0), calls wrapped in
    the precision's autocast; for `mixed` the package's fp32 policy is applied to the case's modules
    until `case.close()`. `packages`: module objects replacing cocosnet / gangealing / coordgan."""
    case = _build_case(name, precision, packages)
    case.close = apply_policy(precision, name.split("-")[0], case.modules.values())
    return case


def _build_case(name: str, precision: str, packages: dict | None) -> Case:
    pk = {p: (packages or {}).get(p) or importlib.import_module(p) for p in PACKAGES}
    torch.manual_seed(0)
    ctx = autocast_context(precision)
    if name.startswith("cocosnet"):
        config = name.split("-")[1]
        pipe = pk["cocosnet"].pipeline.build_pipeline(config)
        _eval(pipe.correspondence_network, pipe.generator)
        if config == "deepfashion":
            x_in, maps = POSE, [None, None]
        elif config == "ade20k":
            x_in, maps = scene_labels(seed=0), [scene_labels(seed=1), scene_labels(seed=2)]
        else:
            x_in, maps = face_labels(), [face_labels(shift=12), face_labels(shift=-10)]
        exemplars = [photo(seed=1), photo(seed=2)]
        fresh = name.endswith("new-exemplar")
        state = {"i": 0}

        def call():
            i = state["i"] = state["i"] + 1 if fresh else 0
            with ctx():
                return pipe.translate(x_in, exemplars[i % 2], exemplar_map=maps[i % 2])

        def output():
            with torch.inference_mode(), ctx():
                x, _ = pipe.encode_input_map(x_in)
                y = pipe.preprocess([exemplars[0]])[0]
                y_map = pipe.encode_input_map(maps[0])[0] if maps[0] is not None else None
                return pipe.run(x, y, y_map)[0].float()

        return Case(call, output, {"corr": pipe.correspondence_network, "G": pipe.generator})
    if name.startswith("gangealing"):
        g = pk["gangealing"]
        transformer = g.SpatialTransformer(**g.TRANSFORMER_CONFIGS["paper"], similarity_iters=3, flip="tv")
        with torch.no_grad():  # small random warp heads, so the warps are not the identity
            transformer.stns[0].warp_head.linear.weight.normal_(0, 0.01)
            transformer.stns[1].warp_head.flow_out[2].weight.normal_(0, 0.01)
        generator = g.StyleGAN2Generator(**g.GENERATOR_CONFIGS["micro"])
        target = g.LearnedTarget(num_directions=1, num_latents=generator.num_latents, inject_index=4,
                                 style_dim=generator.style_dim)
        pipe = g.GANgealingPipeline(generator.eval(), transformer.eval(), target.eval(), None)
        image = photo(seed=3)

        def call():
            with ctx():
                return pipe.congeal([image])

        def output():
            with torch.inference_mode(), ctx():
                x, _ = pipe.preprocess([image])
                return pipe.run(x).congealed.float()

        return Case(call, output, {"T": transformer})
    c = pk["coordgan"]
    res = name.split("-")[1]
    config = "celebA_512" if res == "512" else "celebA_128"
    generator = c.CoordGANGenerator(**c.model.CONFIGS[config]).eval()
    encoder = c.CoordGANOfficialEncoder().eval() if name.endswith("propagate") else None
    pipe = c.CoordGANPipeline(generator=generator, encoder=encoder)
    if name.endswith("propagate"):
        ref, query, labels = photo(128, 4), photo(128, 5), face_labels(128)

        def call():
            with ctx():
                return pipe.propagate_labels(ref, labels, [query])

        def output():
            with torch.inference_mode(), ctx():
                return pipe.encode([ref, query]).correspondence_maps.float()

        return Case(call, output, {"G": generator, "E": encoder})

    def call():
        with ctx():
            return pipe.generate(0, 1)

    def output():
        with torch.inference_mode(), ctx():
            z_s, z_t = pipe._z([0]), pipe._z([1])
            w_s, w_t = generator.structure_code(z_s, 1.0), generator.texture_code(z_t, 1.0)
            return generator(structure_code=w_s, texture_code=w_t, randomize_noise=False).image.float()

    return Case(call, output, {"G": generator})


def autocast_context(precision: str):
    """A context-manager factory: nothing for fp32, CPU autocast to bf16 (also for mixed) / fp16 otherwise."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = {"mixed": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return lambda: torch.autocast("cpu", dtype=dtype)


def apply_policy(precision: str, package: str, modules) -> object:
    """For `mixed`, the package's fp32 policy on `modules` (once, as the app's set_precision does: the
    wrapped parts pass through outside autocast); returns the function that removes it."""
    if precision != "mixed":
        return lambda: None
    policy = importlib.import_module(f"{package}.precision")
    modules = list(modules)
    policy.apply_fp32_policy(*modules)
    return lambda: policy.remove_fp32_policy(*modules)


def machine() -> str:
    """The CPU's model name and its reduced-precision flags (what decides bf16 speed), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cpu unknown"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    wanted = ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_int8")
    return f"{name}; " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)


# ------------------------------------------------------------------ measurement


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn) -> tuple[object, int]:
    """(fn(), peak RSS during the call minus RSS before it), sampling every 2 ms."""
    before, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out = fn()
    finally:
        done.set()
        t.join()
    return out, max(peak[0], rss()) - before


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    d = (out.double() - ref.double()).abs()
    mse = float((d**2).mean())
    psnr = float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)
    return float(d.max()), float(d.mean()), psnr


def load_baseline(ref: str) -> dict:
    """cocosnet / gangealing / coordgan as they were at git `ref`, imported as <name>_baseline."""
    folder = Path(tempfile.mkdtemp(prefix="fullsize_baseline_"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *PACKAGES], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    for p in PACKAGES:
        (folder / p).rename(folder / f"{p}_baseline")
    sys.path.insert(0, str(folder))
    return {p: importlib.import_module(f"{p}_baseline") for p in PACKAGES}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


TRAINING = {  # script, extra flags: the tiny recipes on synthetic faces (batch size: --train-batch)
    "stylegan2": ("train/stylegan2.py", ["--config", "tiny"]),
    "gangealing": ("train/gangealing.py",
                   ["--config", "tiny", "--generator", "checkpoints/gangealing-faces/generator"]),
    "coordgan": ("train/coordgan.py", ["--config", "tiny"]),
    "cocosnet": ("train/cocosnet.py", ["--config", "tiny"]),
    "coat": ("train/coat.py", ["--config", "tiny"]),
}


def training_step_times(threads: int, batch: int, steps: int = 4) -> None:
    """Seconds per optimizer step of each training script, fp32 (--mixed-precision no) vs bf16: each
    script runs `steps` steps with --log-every 1, and the time between its first and its last line in
    logs.jsonl (polled every 10 ms) over steps - 1 is the step time, without start-up, the first
    step's warm-up and the final export."""
    print(f"\nTraining step time, batch {batch}, {threads} thread(s), mean of steps 2..{steps}")
    print("| script | fp32 s/step | bf16 s/step | bf16 / fp32 |")
    print("|---|---|---|---|")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    for name, (script, flags) in TRAINING.items():
        per_step = {}
        for precision in ("no", "bf16"):
            with tempfile.TemporaryDirectory() as out:
                cmd = [sys.executable, script, *flags, "--output", out, "--steps", str(steps),
                       "--mixed-precision", precision,
                       "--batch-size", str(batch), "--log-every", "1", "--sample-every", "100000",
                       "--save-every", "100000"]
                log, seen = Path(out) / "logs.jsonl", []
                with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True) as proc:
                    while proc.poll() is None:
                        lines = log.read_text().count("\n") if log.exists() else 0
                        seen += [time.perf_counter()] * (lines - len(seen))
                        time.sleep(0.01)
                    error = proc.stderr.read()
                if proc.returncode or len(seen) < steps:
                    print(f"| {name} | failed ({precision}): {error.strip().splitlines()[-1:]} | | |")
                    per_step[precision] = float("nan")
                    continue
                per_step[precision] = (seen[steps - 1] - seen[0]) / (steps - 1)
        print(f"| {name} | {per_step['no']:.3f} | {per_step['bf16']:.3f} | "
              f"{per_step['bf16'] / per_step['no']:.2f} |", flush=True)


def fixture_errors(precisions: list, threads: int, cases=None) -> None:
    """Errors on the authors' recorded inputs (bench/fixture_cases.py: the three imported models with the
    fixture weights): each precision's output against our fp32 output and against the authors' recorded
    fp32 output, the time of one run, and whether it is within `--precision auto`'s bound (the numbers
    demos/models.py's AUTO_MIXED relies on). Ends with each package's worst case per precision.
    `cases`: names of bench/fixture_cases.py's CASES (default all)."""
    from fixture_cases import CASES as FIXTURE_CASES
    from fixture_cases import build_fixture_case

    from demos.models import AUTO_BOUND  # PSNR >= 40 dB and mean abs <= 2/255 against fp32

    torch.set_num_threads(threads)
    print(f"{machine()}\ntorch {torch.__version__}, {threads} thread(s); bound: PSNR >= {AUTO_BOUND['psnr_db']} dB "
          f"and mean abs <= {AUTO_BOUND['mean_abs']:.2e} against fp32 (images in [-1, 1])\n")
    print("| case | precision | s | max abs vs our fp32 | mean | PSNR dB | within bound | max abs vs authors' fp32 "
          "| mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = {}  # (package, precision) -> (lowest PSNR, highest mean abs)
    for name in cases or FIXTURE_CASES:
        case, ours = build_fixture_case(name), None
        package = name.split("-")[0]
        for precision in ["fp32", *[p for p in precisions if p != "fp32"]]:
            close = apply_policy(precision, package, case.modules.values())
            with autocast_context(precision)():
                start = time.perf_counter()
                image = case.output()
                seconds = time.perf_counter() - start
            close()
            ours = image if ours is None else ours
            e, a = errors(image, ours), errors(image, case.authors)
            within = e[2] >= AUTO_BOUND["psnr_db"] and e[1] <= AUTO_BOUND["mean_abs"]
            if precision != "fp32":
                psnr, mean = worst.get((package, precision), (math.inf, 0.0))
                worst[package, precision] = (min(psnr, e[2]), max(mean, e[1]))
            print(f"| {name} | {precision} | {seconds:.1f} | {e[0]:.2e} | {e[1]:.2e} | {e[2]:.1f} | "
                  f"{'yes' if within else 'no'} | {a[0]:.2e} | {a[1]:.2e} |", flush=True)
        del case
    print("\nWorst case per package (what `auto` relies on):")
    for (package, precision), (psnr, mean) in worst.items():
        within = psnr >= AUTO_BOUND["psnr_db"] and mean <= AUTO_BOUND["mean_abs"]
        print(f"  {package} {precision}: PSNR {psnr:.1f} dB, mean abs {mean:.2e}: "
              f"{'within' if within else 'outside'} the bound")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=None, choices=list(CASES),
                   help="default: all but coordgan-512-generate (--quick: " + ", ".join(QUICK_CASES) + ")")
    p.add_argument("--precisions", nargs="+", default=["fp32", "mixed", "bf16"], choices=PRECISIONS,
                   help="fp32, mixed (bf16 autocast + the package's fp32 policy), CPU autocast bf16 / fp16 (fp16 "
                        "only where the CPU has fp16 hardware: elsewhere its convolutions are ~250x slower)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="default 1 2 (--quick: 2; --fixtures and --training: the first, default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row (after one warm-up call)")
    p.add_argument("--quick", action="store_true",
                   help="the issue's three cases (" + ", ".join(QUICK_CASES) + ") unless --cases, at 2 threads "
                        "unless --threads, 3 timed calls per row, reduced-precision rows at the largest --threads "
                        "only; then the errors on the same models' recorded calls (--fixtures of "
                        + ", ".join(QUICK_FIXTURES) + ") (~5 min)")
    p.add_argument("--baseline", default=None, metavar="GIT_REF",
                   help="also time the packages of this commit (fp32), interleaved")
    p.add_argument("--training", action="store_true",
                   help="only the training step times (fp32 vs bf16), at the first --threads")
    p.add_argument("--train-batch", type=int, default=4, help="micro-batch of the training step times")
    p.add_argument("--fixtures", nargs="*", default=None, metavar="CASE",
                   help="only the precision errors on the authors' recorded inputs of the three imported models "
                        "(bench/fixture_cases.py; default all its cases), at the first --threads")
    args = p.parse_args(argv)
    threads = args.threads or ([2] if args.quick else [1, 2])
    if args.fixtures is not None:
        return fixture_errors(args.precisions, (args.threads or [1])[0], args.fixtures)
    if args.training:
        return training_step_times((args.threads or [1])[0], args.train_batch)
    cases = args.cases or (list(QUICK_CASES) if args.quick else [c for c in CASES if c != "coordgan-512-generate"])
    baseline = load_baseline(args.baseline) if args.baseline else None
    print(f"{machine()}\ntorch {torch.__version__}, {os.cpu_count()} cpus, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.2f}")
    head = ("| case | precision | threads | p50 s | min s | speed-up vs fp32 | peak MB | max abs diff | mean abs diff "
            "| PSNR dB |")
    if baseline:
        head += " baseline p50 s | speed-up | baseline max abs diff |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name in cases:
        reference, fp32_p50 = None, {}
        for precision in args.precisions:
            case = build_case(name, precision)
            old = build_case(name, "fp32", baseline) if baseline and precision == "fp32" else None
            out = case.output()
            if precision == "fp32":
                reference = out
            err = errors(out, reference) if reference is not None else (float("nan"),) * 3
            old_err = errors(old.output(), reference) if old else None
            for n in threads:
                if args.quick and precision != "fp32" and n != max(threads):
                    continue
                torch.set_num_threads(n)
                repeats = 3 if args.quick else args.repeats
                _, peak = peak_memory(case.call)  # warm-up call, also the memory figure
                if old:
                    old.call()
                times, old_times = [], []
                for _ in range(repeats):
                    times.append(timed(case.call))
                    if old:
                        old_times.append(timed(old.call))
                p50 = float(np.median(times))
                if precision == "fp32":
                    fp32_p50[n] = p50
                speed_up = f"{fp32_p50[n] / p50:.2f}x" if n in fp32_p50 else ""
                row = (f"| {name} | {precision} | {n} | {p50:.3f} | {min(times):.3f} | {speed_up} | "
                       f"{peak / 2**20:.0f} | {err[0]:.2e} | {err[1]:.2e} | {err[2]:.1f} |")
                if old:
                    row += (f" {np.median(old_times):.3f} | {np.median(old_times) / p50:.2f}x | "
                            f"{old_err[0]:.2e} |")
                print(row, flush=True)
            case.close()
    if args.quick:
        print()
        fixture_errors(args.precisions, max(threads), QUICK_FIXTURES)


if __name__ == "__main__":
    main()
