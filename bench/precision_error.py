"""Where the bf16 error of the full-size models comes from (issue #26, item 1).

For each model, as bench/fullsize.py builds it (random weights, the authors' layout, fixed inputs)
and on the authors' recorded call (`-fixture`: the fixture weights and inputs, bench/fixture_cases.py;
CoCosNet celebahq on sample 0), the error of the output against fp32 (PSNR on [-1, 1], max and mean
abs difference) when
  - everything runs under bf16 autocast ("all bf16"),
  - one part alone runs under bf16 autocast and the rest in fp32 ("only X in bf16"),
  - everything runs under bf16 autocast except one part, kept in fp32 with fp32 inputs ("all but X").
A part is a set of submodules (their `forward` is wrapped) or of package functions (the package's
name is rebound for the run). bf16 rounding is the same on every CPU, so the errors do not depend on
whether the CPU computes bf16 natively; only the time does.

    python bench/precision_error.py --quick --policy   # the issue's three models, fixture and random weights,
                                                       # and the packages' mixed paths (~15 min at 1 thread)
    python bench/precision_error.py --cases gangealing-cat-fixture --policy   # one case
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from fullsize import build_case, errors, machine  # noqa: E402

BF16 = torch.bfloat16


def to_float(x):
    """Floating tensors (in tuples / lists / dicts) as float32; anything else unchanged."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, (tuple, list)):
        return type(x)(to_float(v) for v in x)
    if isinstance(x, dict):
        return {k: to_float(v) for k, v in x.items()}
    return x


def in_bf16(fn):
    """fn under bf16 autocast, its outputs back in fp32 (the rest of the model stays fp32)."""
    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", dtype=BF16):
            return to_float(fn(*args, **kwargs))
    return wrapped


def in_fp32(fn):
    """fn with autocast off and fp32 inputs (the rest of the model stays under autocast)."""
    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", enabled=False):
            return fn(*to_float(args), **to_float(kwargs))
    return wrapped


@contextlib.contextmanager
def patched(part, wrap):
    """Wrap the part's modules' forward (instance attribute) and rebind its functions in the packages."""
    modules, functions = part
    undo = []
    for m in modules:
        m.forward = wrap(type(m).forward.__get__(m))
        undo.append(lambda m=m: m.__dict__.pop("forward"))
    for package, name in functions:
        original = getattr(package, name)
        setattr(package, name, wrap(original))
        undo.append(lambda p=package, n=name, o=original: setattr(p, n, o))
    try:
        yield
    finally:
        for u in undo:
            u()


def clear_caches(modules: dict) -> None:
    """Drop the inference caches kept on the modules ((stamp, ...) tuples: CoCosNet's exemplar side,
    stacked / normalised weights): they are stamped with the autocast dtype, not with which parts ran in bf16."""
    for model in modules.values():
        for m in model.modules():
            for key in [k for k, v in m.__dict__.items()
                        if k.startswith("_") and isinstance(v, tuple) and v and isinstance(v[0], tuple)]:
                del m.__dict__[key]


def _of(model, cls_name):
    return [m for m in model.modules() if type(m).__name__ == cls_name]


def _fn(package, name):
    """(module, name) for every module of `package` that binds `name` to the same function."""
    top = importlib.import_module(package)
    target = getattr(importlib.import_module(f"{package}.{_home(package, name)}"), name)
    return [(mod, name) for key, mod in list(sys.modules.items())
            if (key == package or key.startswith(package + ".")) and getattr(mod, name, None) is target] or [
        (top, name)]


def _home(package, name):
    for sub in ("correspondence", "layers", "transformer", "model"):
        try:
            if hasattr(importlib.import_module(f"{package}.{sub}"), name):
                return sub
        except ImportError:
            pass
    raise ValueError(f"{package} has no function {name}")


def parts_of(name: str, modules: dict) -> dict:
    """label -> (submodules, [(package module, function name)]) for one case."""
    if name.startswith("cocosnet"):
        corr, g = modules["corr"], modules["G"]
        return {
            "domain adaptors (both)": ([corr.adaptive_model_seg, corr.adaptive_model_img], []),
            "corr. trunk + phi/theta": ([corr.layer, corr.phi, corr.theta], []),
            "correlation features (unfold, centre, L2)": ([], _fn("cocosnet", "correlation_features")),
            "soft warp (alpha=100 logits, softmax, sum)": ([], _fn("cocosnet", "soft_warp")),
            "PONO (positional norm statistics)": ([], _fn("cocosnet", "positional_norm")),
            "G SPADE resblocks": (_of(g, "SPADEResnetBlock"), []),
            "G self-attention": ([g.attn], []),
            "G fc + conv_img": ([g.fc, g.conv_img], []),
        }
    if name.startswith("gangealing"):
        t = modules["T"]
        return {
            "similarity STN trunk (convs)": ([t.stns[0].input_downsample, t.stns[0].convs, t.stns[0].final_conv,
                                              t.stns[0].final_linear], []),
            "similarity head (matrix)": ([t.stns[0].warp_head], []),
            "flow STN trunk (convs)": ([t.stns[1].input_downsample, t.stns[1].convs, t.stns[1].final_conv], []),
            "flow head (flow, convex upsample)": ([t.stns[1].warp_head], []),
            "sampling grids (identity grid, affine)": ([], _fn("gangealing", "identity_grid")
                                                       + _fn("gangealing", "apply_affine")),
            "warps (mipmap grid_sample)": (_of(t, "MipmapWarp"), []),
        }
    g = modules["G"]
    return {
        "mapping networks": ([g.structure_mapping, g.texture_mapping], []),
        "coordinate warping (warped coordinate map)": ([g.warping], []),
        "Fourier features": ([g.fourier], []),
        "modulated convs (modulation, demodulation, conv)": (_of(g, "ModulatedConv2d"), []),
        "styles (the modulated convs' modulation linears)": ([m.modulation for m in _of(g, "ModulatedConv2d")], []),
        "demodulation factors": ([], _fn("coordgan", "demodulation")),
        "noise injection": (_of(g, "NoiseInjection"), []),
        "to_rgb / up_rgb layers": (list(g.to_rgbs) + list(g.up_rgbs), []),
    }


def fixture_case(name: str):
    """(output, modules) of the authors' recorded call (bench/fixture_cases.py): CoCosNet celebahq sample 0,
    GANgealing cat (2 images), CoordGAN 128 (4 latents)."""
    import fixture_cases

    if name.startswith("cocosnet"):
        case = fixture_cases.cocosnet_case("celebahq", samples=(0,))
    else:
        case = fixture_cases.build_fixture_case(name.removesuffix("-fixture").removesuffix("-generate"))
    return case.output, case.modules


def policy_variants(package: str) -> dict:
    """label -> (FP32 modules, FP32 functions): the package's policy, and the alternatives it was chosen over."""
    policy = importlib.import_module(f"{package}.precision")
    variants = {"mixed path (package policy, bf16)": (policy.FP32_MODULES, policy.FP32_FUNCTIONS)}
    if package == "gangealing":
        from gangealing.transformer import MipmapWarp, SimilarityTransformer

        variants["alternative: the whole similarity STN in fp32 (previous policy)"] = (
            (SimilarityTransformer, MipmapWarp), ("apply_affine",))
    if package == "coordgan":
        from coordgan.model import CoordinateWarpingNetwork, FourierEncoding

        variants["alternative: also the coordinate warping network in fp32"] = (
            (*policy.FP32_MODULES, CoordinateWarpingNetwork), policy.FP32_FUNCTIONS)
        variants["alternative: mapping, coordinate warping, Fourier features in fp32 (previous policy)"] = (
            ("structure_mapping", "texture_mapping", CoordinateWarpingNetwork, FourierEncoding), ())
    return variants


CASES = ("cocosnet-celebahq-fixture", "cocosnet-celebahq", "gangealing-cat-fixture", "gangealing-cat",
         "coordgan-128-fixture", "coordgan-128-generate")


def run_case(name: str, policy: bool) -> None:
    if name.endswith("-fixture"):
        output, modules = fixture_case(name)
    else:
        case = build_case(name, "fp32")
        output, modules = case.output, case.modules
    clear_caches(modules)
    start = time.perf_counter()
    reference = output()
    t_ref = time.perf_counter() - start

    def measure(label, *contexts):
        clear_caches(modules)
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            for c in contexts:
                stack.enter_context(c)
            out = output()
        mx, mean, psnr = errors(out, reference)
        print(f"| {label} | {psnr:.1f} | {mx:.2e} | {mean:.2e} | {time.perf_counter() - start:.1f} |", flush=True)

    print(f"\n{name} (fp32 run: {t_ref:.1f} s)\n")
    print("| run | PSNR dB vs fp32 | max abs | mean abs | s (busy machine) |")
    print("|---|---|---|---|---|")
    autocast = lambda: torch.autocast("cpu", dtype=BF16)  # noqa: E731
    measure("all bf16", autocast())
    parts = parts_of(name, modules)
    for label, part in parts.items():
        measure(f"only {label} in bf16", patched(part, in_bf16))
    for label, part in parts.items():
        measure(f"all but {label}", autocast(), patched(part, in_fp32))
    if policy:
        package = name.split("-")[0]
        keep_fp32 = importlib.import_module(f"{package}.precision").keep_fp32
        for label, (fp32_modules, fp32_functions) in policy_variants(package).items():
            measure(label, autocast(), keep_fp32(*modules.values(), modules=fp32_modules, functions=fp32_functions))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="skip the random-weight CoCosNet case (the fixture one stays)")
    p.add_argument("--policy", action="store_true", help="also the packages' mixed paths (<package>/precision.py)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [c for c in args.cases if not (args.quick and c == "cocosnet-celebahq")]
    print(f"{machine()}\ntorch {torch.__version__}, {args.threads} thread(s), capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    for name in cases:
        run_case(name, args.policy)


if __name__ == "__main__":
    main()
