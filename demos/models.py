"""Which weights each tab uses, loaded once when the app starts (never at import).

Per pipeline, in this order: the command-line flag (`--coordgan DIR_OR_REPO`), the environment
variable (`COORDGAN_MODEL`), the bundled folder under checkpoints/. A local save_pretrained folder
loads with `from_pretrained`; a Hub repo id ("user/name") only when it is not a local path; the
authors' released files through the pipeline's `from_official_checkpoint(path, **options)` with the
options of its ModelSpec: GANgealing's `cat.pt`, CoCosNet's checkpoint folder (`latest_net_G.pth` +
`latest_net_Corr.pth`) or its `latest_net_G.pth`; `official:NAME` (GANgealing, CoordGAN) through the
package's `convert_official.load_release` (downloaded and converted once, then cached). A missing or broken checkpoint never stops the app:
the tab says what to do and its endpoints raise gr.Error.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
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
        return f"a save_pretrained folder, a Hub repo id or {self.official}" if self.official else "a save_pretrained folder or a Hub repo id"


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
            "python train/stylegan2.py --config tiny --data synthetic:faces --pose wide --output runs/stylegan2-faces, then "
            "python train/gangealing.py --config tiny --generator runs/stylegan2-faces/generator --data synthetic:faces "
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
            official="the authors' checkpoint folder holding latest_net_G.pth and latest_net_Corr.pth (or its latest_net_G.pth)",
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

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# `auto` runs a pipeline in a reduced precision only where that is both faster (native bf16 / fp16
# arithmetic: a GPU, or a CPU with avx512_bf16 / AMX) and close: its output within AUTO_ERROR_BOUND of
# fp32 (max abs difference, images in [-1, 1]) on bench/fullsize.py's inputs. The measured errors are in
# bench/README.md; the pipelines that stay within the bound are listed here, per reduced dtype.
AUTO_ERROR_BOUND = 2 / 255
AUTO_REDUCED = {"bf16": (), "fp16": ()}


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


def resolve_precision(precision: str, name: str, dev: torch.device | None = None) -> str:
    """fp32, bf16 or fp16 for pipeline `name`: an explicit choice as it is; `auto` the first reduced
    precision that the device computes natively and that keeps this pipeline within AUTO_ERROR_BOUND,
    else fp32 (on this project's 2-core CPU without bf16 hardware: fp32 everywhere)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    dev = device() if dev is None else dev
    return next((p for p in native_reduced_dtypes(dev) if name in AUTO_REDUCED[p]), "fp32")


def set_precision(pipe, precision: str, dev: torch.device | None = None):
    """Run the pipeline's entry points (the public methods of its class) under `torch.autocast` in the
    resolved precision; weights stay fp32. Returns the pipeline, with `.precision` set."""
    dev = device() if dev is None else dev
    name = type(pipe).__module__.split(".")[0]
    resolved = resolve_precision(precision, name, dev)
    object.__setattr__(pipe, "precision", resolved)
    if resolved == "fp32":
        return pipe
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


def load(spec: ModelSpec, source: str | None = None, env: dict | None = None):
    """The pipeline named by the flag value, the environment or the bundled default, on `device()`;
    a MissingModel saying what to do when it cannot be loaded."""
    env = os.environ if env is None else env
    explicit = source or env.get(spec.env) or None
    source = explicit or str(ROOT / spec.default)
    how = f"pass {spec.flag} DIR_OR_HUB_REPO or set {spec.env}" + (f" ({spec.flag} also takes {spec.official})" if spec.official else "")
    try:
        cls = getattr(importlib.import_module(spec.name), spec.pipeline_class)
    except (ImportError, AttributeError) as e:
        return MissingModel(f"The `{spec.name}` package is not available in this install ({e}); this tab is not available yet.")
    if source.startswith("official:"):  # a named release of the authors: downloaded and converted once, then cached
        return _load_release(spec, source)
    path = Path(source).expanduser()
    if not path.exists() and not (explicit and REPO_ID.match(explicit)):
        return MissingModel(f"No {spec.name} checkpoint at `{source}`. Train one: `{spec.train}`; or {how}.")
    importer = _importer(spec) if spec.official_files else None
    authors_folder = bool(spec.official_folder_file) and (path / spec.official_folder_file).is_file() and not (path / "model_index.json").is_file()
    official = path.is_file() or authors_folder
    if official and importer is None:
        return MissingModel(f"`{source}` is a file, but {spec.name} loads {spec.accepts}; {how}.")
    try:
        if official:  # the authors' release, e.g. GANgealing's cat.pt or CoCosNet's latest_net_G.pth
            pipe = importer(str(path), **spec.official_options)
        else:
            pipe = cls.from_pretrained(str(path) if path.exists() else explicit)
        pipe.to(device())
        for module in getattr(pipe, "components", {}).values():
            if isinstance(module, torch.nn.Module):
                module.eval()
    except Exception as e:  # a broken folder, an unreachable repo: the app still starts
        advice = f"Pass {spec.flag} {spec.accepts} (or set {spec.env})." if official else f"Check it, or {how}."
        return MissingModel(f"Could not load the {spec.name} checkpoint `{source}`: {_problem(e)}\n{advice}")
    return pipe


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
    """`official:NAME` through the package's convert_official.load_release (GANgealing, CoordGAN)."""
    try:
        releases = importlib.import_module(f"{spec.name}.convert_official")
        if not hasattr(releases, "load_release"):
            raise ImportError
        return _ready(releases.load_release(source))
    except ImportError:
        return MissingModel(f"{spec.name} has no named releases (`{source}`); pass {spec.flag} {spec.accepts}.")
    except Exception as e:  # offline and not cached, an unknown name, a moved file: the app still starts
        return MissingModel(f"Could not load the {spec.name} release `{source}`: {_problem(e)}\n"
                            f"Run `python -m {spec.name}.convert_official --list` for the names, or pass {spec.flag} {spec.accepts}.")


def load_all(sources: dict | None = None, env: dict | None = None, precision: str = "fp32") -> dict:
    """name -> pipeline or MissingModel, for every pipeline of the app; `precision` as in set_precision."""
    sources = sources or {}
    pipelines = {name: load(spec, sources.get(name), env) for name, spec in SPECS.items()}
    return {name: pipe if isinstance(pipe, MissingModel) else set_precision(pipe, precision) for name, pipe in pipelines.items()}


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
