"""Which weights each tab uses, loaded once when the app starts (never at import).

Per pipeline, in this order: the command-line flag (`--coordgan DIR_OR_REPO`), the environment
variable (`COORDGAN_MODEL`), then the default: the bundled folder under checkpoints/, or, on a
Hugging Face Space (`SPACE_ID` set) or with `--models official`, the authors' release named in
RELEASE_DEFAULTS (CoordGAN celebA with its encoder, GANgealing celeba and cat, CoCosNet celebahq;
COAT has no release and stays ours). A release is downloaded and converted once by its package's
`convert_official.load_release` and cached; one that cannot arrive (offline, a moved file) falls
back to the bundled folder, and the tab says so (`describe`). Every load is timed in the log.

A local save_pretrained folder loads with `from_pretrained`; a Hub repo id ("user/name") only when
it is not a local path; the authors' released files through the package's
`convert_official.from_official_checkpoint(path, **options)` with the options of its ModelSpec:
GANgealing's `cat.pt`, CoCosNet's checkpoint folder (`latest_net_G.pth` + `latest_net_Corr.pth`)
or its `latest_net_G.pth`; `official:NAME` through `convert_official.load_release`. A missing or
broken checkpoint never stops the app: the tab says what to do and its endpoints raise gr.Error.
`describe(name, pipe)` is the one line at a tab's top saying which weights it runs, and
`describe_all(pipelines)` the same for every model as JSON (the /models endpoint).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import torch

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ModelSpec:
    name: str  # flag name and package
    pipeline_class: str
    env: str
    default: str  # bundled folder, relative to the repository root
    train: str  # how to make the bundled folder
    official: str = ""  # the authors' released files this flag also takes ("" when there is no importer)
    official_folder_file: str = ""  # a folder holding this file is an authors' checkpoint folder, not save_pretrained
    official_options: dict = field(default_factory=dict)  # keyword options for from_official_checkpoint
    official_files: bool = True  # False: the flag takes no authors' files even if the pipeline has an importer

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def accepts(self) -> str:
        """What the flag takes, for messages."""
        return (
            f"a save_pretrained folder, a Hub repo id or {self.official}"
            if self.official
            else "a save_pretrained folder or a Hub repo id"
        )


SPECS = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "coordgan",
            "CoordGANPipeline",
            "COORDGAN_MODEL",
            "checkpoints/coordgan-faces",
            "python train/coordgan.py --config tiny --data synthetic:faces --output runs/coordgan-faces "
            "(then the same with --stage encoder) and copy runs/coordgan-faces/pipeline to checkpoints/coordgan-faces",
            # the authors' release is a generator file plus an encoder file, more than one flag value names:
            # --coordgan takes their converted folder (python -m coordgan.convert_official) or official:NAME
            official_files=False,
        ),
        ModelSpec(
            "gangealing",
            "GANgealingPipeline",
            "GANGEALING_MODEL",
            "checkpoints/gangealing-faces",
            "python train/stylegan2.py --config tiny --data synthetic:faces --pose wide --output "
            "runs/stylegan2-faces, then "
            "python train/gangealing.py --config tiny --generator runs/stylegan2-faces/generator --data "
            "synthetic:faces "
            "--output runs/gangealing-faces, and copy runs/gangealing-faces/pipeline to checkpoints/gangealing-faces",
            official="the authors' released .pt (e.g. cat.pt)",
            official_options=dict(category=None),  # the authors' test-time settings follow the file name
        ),
        ModelSpec(
            "cocosnet",
            "CoCosNetPipeline",
            "COCOSNET_MODEL",
            "checkpoints/cocosnet-faces",
            "python train/cocosnet.py --config tiny --data synthetic:faces --output runs/cocosnet-faces "
            "and copy runs/cocosnet-faces/pipeline to checkpoints/cocosnet-faces",
            official="the authors' checkpoint folder holding latest_net_G.pth and latest_net_Corr.pth "
            "(or its latest_net_G.pth)",
            official_folder_file="latest_net_G.pth",
            official_options=dict(config=None, correspondence=None),  # release recognised from the files; Corr beside G
        ),
        ModelSpec(
            "coat",
            "COATPipeline",
            "COAT_MODEL",
            "checkpoints/coat-faces",
            "python train/coat.py --config tiny --data synthetic:faces --output runs/coat-faces "
            "and copy runs/coat-faces/pipeline to checkpoints/coat-faces",
        ),
    )
}

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODES = ("bundled", "official")
# what a Space (or --models official) runs by default: the authors' releases (COAT has none)
RELEASE_DEFAULTS = {"coordgan": "official:celebA", "gangealing": "official:celeba", "cocosnet": "official:celebahq"}
# a second model of a package, loaded only in official mode: key -> (package, release)
SECOND_RELEASES = {"gangealing_cat": ("gangealing", "official:cat")}
BUNDLED_HOW = (
    "real photos need the authors' models: run the app with `--models official` (a Space does by default) or pass "
    "`{flag} official:NAME` (`python -m {package}.convert_official --list` names them)"
)


class MissingModel:
    """Stands in for a pipeline that could not be loaded; `message` says what to do."""

    def __init__(self, message: str):
        self.message = message

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"MissingModel({self.message!r})"


def device() -> torch.device:
    """The app's device: a GPU when one is present (this is app code, not library code)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ------------------------------------------------------------------ precision (--precision)

PRECISIONS = ("auto", "fp32", "mixed", "bf16", "fp16")
DTYPES = {"mixed": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}
# `auto` runs a pipeline in "mixed" precision (bf16 autocast, and the package's fp32 policy: the parts
# listed in <package>/precision.py stay fp32) only where that is both faster (the device computes bf16
# natively: a CUDA GPU with bf16, a CPU with avx512_bf16 or amx_bf16) and close: the package's mixed
# path within AUTO_BOUND of fp32 on the authors' recorded fixture inputs (issue #26). fp32 elsewhere.
AUTO_BOUND = {"psnr_db": 40.0, "mean_abs": 2 / 255}  # against fp32, images in [-1, 1] (PSNR peak-to-peak 2)
# The packages whose mixed path is within AUTO_BOUND; worst case of each over its fixture calls,
# measured by `OMP_NUM_THREADS=1 python bench/fullsize.py --fixtures` (bench/README.md, "Reduced precision"):
AUTO_MIXED = (
    "cocosnet",  # 46.7 dB, mean abs 6.6e-3 (deepfashion; celebahq 49.7 dB, ade20k 48.6, celebahqedge 50.0)
    "gangealing",  # 50.2 dB, mean abs 3.5e-3 (cat, K = 1, congealing with flip)
    "coordgan",  # 51.3 dB, mean abs 4.3e-3 (celebA_128, G(z_s, z_t) of 4 latents)
)


def cpu_flags() -> set:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def native_reduced_dtypes(dev: torch.device) -> tuple:
    """The reduced precisions this device computes natively (faster than fp32), best first."""
    if dev.type == "cuda":
        return ("bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp16",)
    if dev.type == "cpu":
        flags = cpu_flags()
        bf16 = ("bf16",) if flags & {"avx512_bf16", "amx_bf16"} else ()
        return bf16 + (("fp16",) if flags & {"avx512_fp16", "amx_fp16"} else ())
    return ()


def precision_policy(name: str):
    """The package's mixed-precision policy module (<package>/precision.py), or None where it has none."""
    try:
        return importlib.import_module(f"{name}.precision")
    except ModuleNotFoundError as error:
        if error.name not in (name, f"{name}.precision"):
            raise
        return None


def resolve_precision(precision: str, name: str, dev: torch.device | None = None) -> str:
    """fp32, mixed, bf16 or fp16 for pipeline package `name`: an explicit choice as it is (mixed is plain
    bf16 for a package without a policy); `auto` mixed where the device computes bf16 natively and `name`
    is in AUTO_MIXED, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        dev = device() if dev is None else dev
        return "mixed" if "bf16" in native_reduced_dtypes(dev) and name in AUTO_MIXED else "fp32"
    return "bf16" if precision == "mixed" and precision_policy(name) is None else precision


def set_precision(pipe, precision: str, dev: torch.device | None = None):
    """Run the pipeline's entry points (the public methods of its class) under `torch.autocast` in the
    resolved precision; weights stay fp32. For mixed, the package's fp32 policy is applied once to the
    pipeline's modules (its wrapped forwards pass through outside autocast, and its FP32_FUNCTIONS are
    rebound for the whole process). Returns the pipeline, with `.precision` set."""
    dev = device() if dev is None else dev
    name = _package(pipe)
    resolved = resolve_precision(precision, name, dev)
    object.__setattr__(pipe, "precision", resolved)
    if resolved == "fp32":
        return pipe
    if resolved == "mixed":
        modules = [m for m in getattr(pipe, "components", {}).values() if isinstance(m, torch.nn.Module)]
        precision_policy(name).apply_fp32_policy(*modules)
    for attr, value in vars(type(pipe)).items():
        if attr.startswith("_") or not callable(value) or isinstance(value, (staticmethod, classmethod)):
            continue
        object.__setattr__(pipe, attr, _autocast(getattr(pipe, attr), dev.type, DTYPES[resolved]))
    return pipe


def _autocast(method, device_type: str, dtype: torch.dtype):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            return method(*args, **kwargs)

    return run


def _problem(error: Exception, limit: int = 400) -> str:
    """An exception as one line. Our importers raise a ValueError whose first line names the problem
    (the second says what to pass to the library: the app says that with its own flags); other
    libraries' messages can run to a page, so only their first line is kept, after the exception's name."""
    line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    return line if isinstance(error, ValueError) else f"{type(error).__name__}: {line}"


def default_mode(env: dict | None = None) -> str:
    """ "official" on a Hugging Face Space (SPACE_ID is set there), else "bundled"."""
    env = os.environ if env is None else env
    return "official" if env.get("SPACE_ID") else "bundled"


def load(spec: ModelSpec, source: str | None = None, env: dict | None = None, mode: str = "bundled"):
    """The pipeline named by the flag value, the environment or the default (the bundled folder;
    in `mode` "official" the authors' release, falling back to the bundled folder), on `device()`;
    a MissingModel saying what to do when it cannot be loaded. The pipeline's `weights` says where
    its weights came from (source, a fallback note, seconds)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    env = os.environ if env is None else env
    explicit = source or env.get(spec.env) or None
    if explicit is None and mode == "official" and spec.name in RELEASE_DEFAULTS:
        pipe = _timed(spec.name, RELEASE_DEFAULTS[spec.name], lambda: _load_release(spec, RELEASE_DEFAULTS[spec.name]))
        if not isinstance(pipe, MissingModel):
            return pipe
        bundled = _timed(spec.name, spec.default, lambda: _load_source(spec, None, env))
        reason = pipe.message.splitlines()[0].replace(
            f"Could not load the {spec.name} release `{RELEASE_DEFAULTS[spec.name]}`: ", ""
        )
        note = (
            f"The authors' release `{RELEASE_DEFAULTS[spec.name]}` could not be loaded ({reason}); "
            "this tab runs the bundled model instead."
        )
        print(f"{spec.name}: {note}", file=sys.stderr, flush=True)
        if isinstance(bundled, MissingModel):
            return MissingModel(f"{note.replace(' this tab runs the bundled model instead.', '')} {bundled.message}")
        return _mark(bundled, note=note)
    return _timed(spec.name, explicit or spec.default, lambda: _load_source(spec, explicit, env))


def _timed(name: str, source: str, load_fn):
    start = time.perf_counter()
    pipe = load_fn()
    seconds = time.perf_counter() - start
    if not isinstance(pipe, MissingModel):
        _mark(pipe, seconds=seconds)
        print(f"{name}: {source} loaded in {seconds:.1f} s", file=sys.stderr, flush=True)
    return pipe


def _mark(pipe, **info):
    """Record where a pipeline's weights came from in `pipe.weights` (a dict: source, note, seconds)."""
    weights = dict(getattr(pipe, "weights", None) or {})
    weights.update(info)
    object.__setattr__(pipe, "weights", weights)
    return pipe


def _load_source(spec: ModelSpec, explicit: str | None, env: dict):
    source = explicit or str(ROOT / spec.default)
    how = f"pass {spec.flag} DIR_OR_HUB_REPO or set {spec.env}" + (
        f" ({spec.flag} also takes {spec.official})" if spec.official else ""
    )
    try:
        cls = getattr(importlib.import_module(spec.name), spec.pipeline_class)
    except (ImportError, AttributeError) as e:
        return MissingModel(
            f"The `{spec.name}` package is not available in this install ({e}); this tab is not available yet."
        )
    if source.startswith("official:"):  # a named release of the authors: downloaded and converted once, then cached
        return _load_release(spec, source)
    path = Path(source).expanduser()
    if not path.exists() and not (explicit and REPO_ID.match(explicit)):
        return MissingModel(f"No {spec.name} checkpoint at `{source}`. Train one: `{spec.train}`; or {how}.")
    importer = _importer(spec) if spec.official_files else None
    authors_folder = (
        bool(spec.official_folder_file)
        and (path / spec.official_folder_file).is_file()
        and not (path / "model_index.json").is_file()
    )
    official = path.is_file() or authors_folder
    if official and importer is None:
        return MissingModel(f"`{source}` is a file, but {spec.name} loads {spec.accepts}; {how}.")
    try:
        if official:  # the authors' release, e.g. GANgealing's cat.pt or CoCosNet's latest_net_G.pth
            pipe = importer(str(path), **spec.official_options)
        else:
            pipe = cls.from_pretrained(str(path) if path.exists() else explicit)
        _ready(pipe)
    except Exception as e:  # a broken folder, an unreachable repo: the app still starts
        advice = f"Pass {spec.flag} {spec.accepts} (or set {spec.env})." if official else f"Check it, or {how}."
        return MissingModel(f"Could not load the {spec.name} checkpoint `{source}`: {_problem(e)}\n{advice}")
    kind = "bundled" if explicit is None else "authors' files" if official else "folder or repo"
    return _mark(pipe, source=explicit or spec.default, kind=kind, note="")


def _importer(spec: ModelSpec):
    """The package's `convert_official.from_official_checkpoint(path, **options)`, or None without one."""
    try:
        return importlib.import_module(f"{spec.name}.convert_official").from_official_checkpoint
    except (ImportError, AttributeError):
        return None


def _ready(pipe):
    pipe.to(device())
    for module in getattr(pipe, "components", {}).values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return pipe


def _load_release(spec: ModelSpec, source: str):
    """`official:NAME` through the package's convert_official.load_release (CoordGAN, GANgealing, CoCosNet)."""
    try:
        releases = importlib.import_module(f"{spec.name}.convert_official")
        if not hasattr(releases, "load_release"):
            raise ImportError
        pipe = _ready(releases.load_release(source))
    except ImportError:
        return MissingModel(f"{spec.name} has no named releases (`{source}`); pass {spec.flag} {spec.accepts}.")
    except Exception as e:  # offline and not cached, an unknown name, a moved file: the app still starts
        return MissingModel(
            f"Could not load the {spec.name} release `{source}`: {_problem(e)}\n"
            f"Run `python -m {spec.name}.convert_official --list` for the names, or pass {spec.flag} {spec.accepts}."
        )
    return _mark(pipe, source=source, kind="release", note="")


def load_all(
    sources: dict | None = None, env: dict | None = None, precision: str = "fp32", mode: str | None = None
) -> dict:
    """name -> pipeline or MissingModel, for every pipeline of the app; `precision` as in
    set_precision; `mode` "bundled" or "official" (default: official on a Space, see default_mode).
    In official mode, with no GANgealing model named, "gangealing_cat" holds the authors' cat too."""
    sources, env = sources or {}, os.environ if env is None else env
    mode = default_mode(env) if mode is None else mode
    pipelines = {name: load(spec, sources.get(name), env, mode) for name, spec in SPECS.items()}
    if mode == "official":
        for key, (package, release) in SECOND_RELEASES.items():
            if not (sources.get(package) or env.get(SPECS[package].env)):
                pipelines[key] = _timed(key, release, lambda p=package, r=release: _load_release(SPECS[p], r))
    return {
        name: pipe if isinstance(pipe, MissingModel) else set_precision(pipe, precision)
        for name, pipe in pipelines.items()
    }


# ------------------------------------------------------------------ which weights a tab runs
def _package(pipe) -> str:
    return type(pipe).__module__.split(".")[0]


def resolution(pipe) -> int | None:
    """The image size the pipeline's networks work at (the largest `resolution` / `input_size` of its components)."""
    sizes = []
    for module in getattr(pipe, "components", {}).values():
        config = getattr(module, "config", None) or {}
        sizes += [v for k in ("resolution", "input_size") if isinstance(v := config.get(k), int)]
        if isinstance(getattr(type(module), "resolution", None), property):  # computed, e.g. CoordGAN's generator
            sizes += [v for v in (module.resolution,) if isinstance(v, int)]
    return max(sizes) if sizes else None


def weights_info(name: str, pipe) -> dict:
    """Where a tab's weights came from, as plain data: kind (release, bundled, folder or repo,
    authors' files, missing), source, resolution, trained_on, paper, note, seconds, and `line`
    (describe's markdown)."""
    if isinstance(pipe, MissingModel) or pipe is None:
        message = pipe.message if pipe is not None else "This model is not loaded."
        return dict(name=name, kind="missing", source=None, note=message, line=f"⚠️ **No model loaded.** {message}")
    weights = getattr(pipe, "weights", None) or {}
    info = dict(
        name=name,
        kind=weights.get("kind", "folder or repo"),
        source=weights.get("source"),
        resolution=resolution(pipe),
        note=weights.get("note", ""),
        seconds=round(weights["seconds"], 2) if "seconds" in weights else None,
    )
    package = _package(pipe)
    if info["kind"] == "release":
        release = str(info["source"]).split(":", 1)[1]
        module = importlib.import_module(f"{package}.releases")
        facts = module.RELEASES[release]
        info.update(trained_on=facts.trained_on, paper=module.PAPER, resolution=facts.resolution)
        info["line"] = f"**Weights:** the authors' release: {module.describe(release)}."
    elif info["kind"] == "bundled":
        how = BUNDLED_HOW.format(flag=SPECS[package].flag if package in SPECS else "--" + package, package=package)
        if package == "coat":  # no authors' release: ours is the only COAT here
            how = (
                "no authors' release of COAT exists; a bigger model trained on real photos would need "
                "`train/coat.py --config paper`"
            )
        info.update(trained_on="synthetic faces (synthetic/, trained here on a CPU)", paper=None)
        info["line"] = (
            f"**Weights:** the bundled toy model: {info['resolution']} px, trained here on synthetic faces: "
            f"try a synthetic example; {how}."
        )
    else:
        info["line"] = f"**Weights:** `{info['source']}` ({info['kind']}, {info['resolution']} px)."
    if info["note"]:
        info["line"] = f"⚠️ {info['note']} {info['line']}"
    return info


def describe(name: str, pipe) -> str:
    """One markdown line for the top of a tab: which weights it runs (the authors' release, with its
    resolution, data and paper, or the bundled toy and how to get the real models; a fallback note)."""
    return weights_info(name, pipe)["line"]


def describe_all(pipelines: dict) -> dict:
    """name -> weights_info(name, pipe) for every loaded model: the /models endpoint's answer."""
    return {name: weights_info(name, pipe) for name, pipe in pipelines.items()}


def require(pipeline):
    """The pipeline, or a gr.Error with the MissingModel's instructions."""
    if isinstance(pipeline, MissingModel) or pipeline is None:
        raise gr.Error(pipeline.message if pipeline is not None else "This model is not loaded.")
    return pipeline


def missing_notice(pipeline) -> None:
    """A visible warning at the top of a tab whose model is missing."""
    if isinstance(pipeline, MissingModel) or pipeline is None:
        gr.Markdown(f"⚠️ **Model not loaded.** {pipeline.message if pipeline is not None else ''}")


def zero_gpu():
    """`spaces.GPU` (Hugging Face ZeroGPU) when the `spaces` package imports, else None."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces.GPU


def inference(fn):
    """Decorate a handler that runs a model: always `torch.inference_mode`, and ZeroGPU's
    `@spaces.GPU` where that package exists (decided when the app is built, not at import)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            return fn(*args, **kwargs)

    gpu = zero_gpu()
    return gpu(wrapper) if gpu is not None else wrapper
