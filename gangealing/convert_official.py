"""Import the authors' released GANgealing checkpoints (wpeebles/gangealing, .pt pickles).

    python -m gangealing.convert_official cat.pt --output checkpoints/gangealing-cat
    python -m gangealing.convert_official car.pt --output checkpoints/gangealing-car --category car
    python -m gangealing.convert_official official:cat [--output DIR]   (a named release: downloaded and converted once)
    python -m gangealing.convert_official --list                        (the named releases and where they come from)

In Python, `from_official_checkpoint(path, **options)` returns a GANgealingPipeline (this module
builds on pipeline.py; the pipeline never imports it).

The file is read with `torch.load(weights_only=True)`, allowing only `argparse.Namespace`
(the pickled training arguments): no arbitrary code runs. Our networks keep the official
state_dict key names, so every tensor maps by name; shapes are checked, and unknown or missing
keys are named (the authors' loader silently drops keys; we only skip the constant buffers it
skips: input-downsample kernels, `one_hot`, the obsolete `rebias`). The layout (resolution, widths,
heads) is read from the keys, the authors' defaults standing in for a missing key so that every
missing key is named. The authors' test-time settings (padding mode, similarity iterations, target
inject index) come from their table of pretrained hyperparameters, keyed by category (given, or
taken from the file name), and are stored in our configs.

A bad file is a ValueError of one or two lines, said the same way by the three converters (see
coordgan/convert_official.py); the command prints it and exits 2. Helpers marked `# Copied from`
are copies kept identical on purpose (tests/test_copies.py).

Named releases (`official:NAME`, releases.py) download from the authors' server; `load_release`
converts one once into CONVERTED_CACHE/gangealing/NAME and loads that folder afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from huggingface_hub import constants

from . import releases
from .layers import stylegan_channels
from .pipeline import GANgealingPipeline
from .stylegan2 import StyleGAN2Generator
from .target import LearnedTarget
from .transformer import ClusterClassifier, SpatialTransformer

# The authors' test-time settings per released model (their PRETRAINED_TEST_HYPERPARAMS; the STN's
# heads come from the file) and the mixing cutoff of the cars and celeba targets (fixtures README, section 3).
PRETRAINED_TEST_SETTINGS = {
    "bicycle": dict(padding_mode="reflection", similarity_iters=3),
    "car": dict(padding_mode="reflection", similarity_iters=3, inject_index=6),
    "cat": dict(padding_mode="border", similarity_iters=3),
    "cat_ssl_mix6": dict(padding_mode="border", similarity_iters=3),
    "celeba": dict(padding_mode="border", similarity_iters=1, inject_index=6),
    "cub": dict(padding_mode="border", similarity_iters=1),
    "dog": dict(padding_mode="border", similarity_iters=3),
    "horse": dict(padding_mode="reflection", similarity_iters=3),
    "tvmonitor": dict(padding_mode="reflection", similarity_iters=3),
}
DEFAULT_TEST_SETTINGS = dict(padding_mode="border", similarity_iters=1, inject_index=5)

MODEL_KEYS = {"g_ema", "t_ema", "ll", "classifier"}
TRAINING_STATE_KEYS = {"g", "d", "t", "t_optim", "t_sched", "ll_optim", "ll_sched", "cls_optim", "cls_sched", "args"}
# constant buffers the authors' loader drops before loading (ours are built by the constructor)
_SKIPPED = re.compile(r"(^|\.)input_downsample\.kernel_(horz|vert)$|(^|\.)warp_head\.(rebias|one_hot)$")
# the layout of the authors' networks where a file does not say (train.py's and the applications' defaults)
AUTHORS_GENERATOR = dict(resolution=256, style_dim=512, n_mlp=8, channel_multiplier=2.0)
AUTHORS_STN = dict(flow_size=128, channel_multiplier=0.5, num_heads=1)
EXPECTED = "one of the authors' GANgealing releases"
WHAT_TO_PASS = (
    "pass one of the authors' released GANgealing files (cat.pt, car.pt, ...: a dict with g_ema, t_ema, ll "
    "[, classifier, args]), or load a converted folder with GANgealingPipeline.from_pretrained"
)
CONVERTED_CACHE = Path(constants.HF_HOME) / "converted"  # converted folders: CONVERTED_CACHE/gangealing/NAME


# ----------------------------------------------------------------------------- reading a file (copies)
# Copied from coordgan.convert_official._shorten
def _shorten(items, limit: int = 4) -> str:
    """A few items, then the count: "a, b, c, d, ... (12 in all)"."""
    items = [str(item) for item in items]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# Copied from coordgan.convert_official._torch_load
def _torch_load(path: Path):
    """torch.load(weights_only=True) allowing argparse.Namespace only (memory-mapped when the file is a
    zip archive); every failure is a one-line ValueError naming the problem."""
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a checkpoint file")
    with path.open("rb") as f:
        head = f.read(10)
    if not head:
        raise ValueError(f"{str(path)!r} is empty")
    if head[8:10] == b'{"':  # an 8-byte header length, then the JSON header
        raise ValueError(
            f"{str(path)!r} is a safetensors file (the weights of a converted folder?), not the authors' "
            "checkpoint; load the folder that holds it with from_pretrained"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(b"PK"))
    except Exception as error:  # torch.load raises anything from KeyError to RuntimeError on a bad file
        unsafe = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(error))
        if unsafe and not unsafe.group(1).startswith("torch."):
            raise ValueError(
                f"{str(path)!r} holds pickled Python objects ({unsafe.group(1)}) besides tensors; "
                "they are not loaded, since unpickling them could run code"
            ) from None
        if head.startswith(b"PK") or head.startswith(b"\x80"):  # a torch zip archive or a legacy pickle that breaks off
            detail = (
                "the pickle stream breaks off"
                if unsafe or not str(error)
                else str(error).split(". ")[0].splitlines()[0][:120]
            )
            raise ValueError(
                f"{str(path)!r} is truncated or corrupt: torch.load could not read it ({detail})"
            ) from None
        raise ValueError(
            f"{str(path)!r} is not a PyTorch checkpoint (it starts with {head[:8]!r}, not a torch.save header)"
        ) from None


# Copied from coordgan.convert_official.looks_like
def looks_like(ckpt) -> str | None:
    """What a loaded checkpoint is, from its keys, when it is one of the authors' files of CoordGAN,
    GANgealing, CoCosNet or StyleGAN2 (or one network of them); None when the keys say nothing."""
    if not isinstance(ckpt, dict):
        return None
    keys = {str(k) for k in ckpt}
    if {"t_ema", "ll"} <= keys:
        return "a GANgealing release (g_ema, t_ema, ll)"
    if {"g_ema", "e"} <= keys:
        return "a CoordGAN train-encoder.py checkpoint (g, e, g_ema, g_optim)"
    if {"g_ema", "d_patch"} <= keys:
        return "a CoordGAN train.py checkpoint (g, d, g_ema, g_optim, d_optim, d_patch)"
    if {"g_ema", "d"} <= keys:
        coordgan = isinstance(ckpt["g_ema"], dict) and "foldnet.conv1_1.weight" in ckpt["g_ema"]
        return (
            "a CoordGAN train.py checkpoint (g, d, g_ema, ...)"
            if coordgan
            else "a StyleGAN2 training checkpoint (g, d, g_ema, ...)"
        )
    if any(isinstance(v, dict) for v in ckpt.values()):
        return None

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    for test, what in (
        (has("adaptive_model_seg."), "CoCosNet's correspondence network (a latest_net_Corr.pth state_dict)"),
        (has("discriminator_0."), "CoCosNet's discriminator (a latest_net_D.pth state_dict)"),
        ("fc.weight" in keys and has("head_0."), "CoCosNet's generator (a latest_net_G.pth state_dict)"),
        (has("foldnet."), "a CoordGAN generator's state_dict (g_ema alone)"),
        (has("sp_fc.") or has("FromRGB."), "a CoordGAN encoder's state_dict (e alone)"),
        (has("stns."), "a GANgealing transformer's state_dict (t_ema alone)"),
        ({"coefficients", "directions"} <= keys, "a GANgealing target's state_dict (ll alone)"),
        ("style.1.weight" in keys and has("to_rgb"), "a StyleGAN2 generator's state_dict (g_ema alone)"),
    ):
        if test:
            return what
    return None


# Copied from coordgan.convert_official.key_problems
def key_problems(expected: dict, state: dict) -> list[str]:
    """Unknown, missing and mis-shaped keys of `state` against {key: shape}, as short phrases
    ("unknown keys: a, b", "missing keys: c, ... (40 in all)", "wrong shapes: ..."); empty: a match."""
    unknown = sorted(str(k) for k in set(state) - set(expected))
    missing = [k for k in expected if k not in state]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(shape)})"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    ]
    return [
        f"{what}: {_shorten(keys)}"
        for what, keys in (("unknown keys", unknown), ("missing keys", missing), ("wrong shapes", wrong))
        if keys
    ]


# Copied from coordgan.convert_official.load_into
def load_into(model: torch.nn.Module, state: dict, name: str) -> None:
    """Copy `state` into `model` name for name; unknown, missing or mis-shaped keys are a ValueError
    naming them. A model built on the meta device takes the file's tensors as they are (no copy)."""
    ours = model.state_dict()
    problems = key_problems({k: tuple(v.shape) for k, v in ours.items()}, state)
    if problems:
        raise ValueError(f"'{name}' does not match the network this importer builds: " + "; ".join(problems))
    state = {k: v.to(ours[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=any(t.is_meta for t in ours.values()))


# Copied from coordgan.convert_official.save_atomic
def save_atomic(pipe, output) -> None:
    """save_pretrained into a temporary sibling, then rename: a reader never sees half a folder."""
    output = Path(output)
    tmp = output.with_name(output.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)


# Copied from coordgan.convert_official._check_state_dict
def _check_state_dict(state, name: str, path: Path) -> dict:
    if not isinstance(state, dict):
        raise ValueError(
            f"{str(path)!r}: '{name}' must be a state_dict (a dict of tensors), got {type(state).__name__}"
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor) or v.is_meta]
    if bad:
        raise ValueError(
            f"{str(path)!r}: '{name}' must be a state_dict of tensors with data; {len(bad)} entries are not: "
            f"{_shorten(bad)}"
        )
    return state


# ----------------------------------------------------------------------------- GANgealing's files
def read_checkpoint(path) -> dict:
    """The checkpoint dict of a released .pt, read with torch.load(weights_only=True) (allowing
    argparse.Namespace only) and checked: the top-level keys and that each network is a state_dict.
    Anything else is a ValueError whose message names the problem and what to pass instead."""
    path = Path(path)
    try:
        ckpt = _torch_load(path)
        if not isinstance(ckpt, dict):
            raise ValueError(
                f"{str(path)!r} holds a {type(ckpt).__name__}, not a dict of state_dicts (g_ema, t_ema, ll, ...)"
            )
        what = looks_like(ckpt)
        if what is not None and not what.startswith("a GANgealing release"):
            raise ValueError(f"{str(path)!r} looks like {what}, not {EXPECTED}")
        unknown = sorted(str(k) for k in set(ckpt) - MODEL_KEYS - TRAINING_STATE_KEYS)
        missing = [k for k in ("g_ema", "t_ema", "ll") if k not in ckpt]
        if unknown or missing:
            found = "; ".join(
                f"{w}: {_shorten(k)}"
                for w, k in (("unknown top-level keys", unknown), ("missing top-level keys", missing))
                if k
            )
            raise ValueError(f"{str(path)!r} is not {EXPECTED}: {found}")
        for name in MODEL_KEYS & set(ckpt):
            _check_state_dict(ckpt[name], name, path)
    except ValueError as error:
        raise ValueError(f"{error}\n{WHAT_TO_PASS[0].upper()}{WHAT_TO_PASS[1:]}.") from None
    return ckpt


def load_authors_state(model: torch.nn.Module, state: dict, name: str) -> None:
    """load_into, as the authors' loader does it: the constant buffers it drops (_SKIPPED) keep the
    constructor's values whether or not the file has them."""
    constants_ = {k: v for k, v in model.state_dict().items() if _SKIPPED.search(k)}
    load_into(model, {**constants_, **{k: v for k, v in state.items() if not _SKIPPED.search(k)}}, name)


def _tensor(sd: dict, key: str, dim: int):
    """sd[key] when it is a tensor of `dim` dimensions, else None (the layout falls back to the authors' default)."""
    value = sd.get(key)
    return value if isinstance(value, torch.Tensor) and value.dim() == dim else None


def _generator_config(sd: dict) -> dict:
    """StyleGAN2Generator's arguments read from g_ema's keys, AUTHORS_GENERATOR where a key is missing."""
    noises = len([k for k in sd if k.startswith("noises.noise_")])
    resolution = 2 ** ((noises - 1) // 2 + 2) if noises else AUTHORS_GENERATOR["resolution"]
    if not 8 <= resolution <= 4096:
        raise ValueError(
            f"'g_ema': cannot read the generator layout ({noises} noise buffers give no resolution in 8..4096)"
        )
    style = _tensor(sd, "style.1.weight", 2)
    last = _tensor(
        sd, f"to_rgbs.{resolution.bit_length() - 4}.conv.weight", 5
    )  # (1, 3, channels at `resolution`, 1, 1)
    cm = (
        last.shape[2] / stylegan_channels(resolution, 1.0)
        if last is not None and resolution > 32
        else AUTHORS_GENERATOR["channel_multiplier"]
    )
    return dict(
        resolution=resolution,
        style_dim=style.shape[0] if style is not None else AUTHORS_GENERATOR["style_dim"],
        n_mlp=len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)]) or AUTHORS_GENERATOR["n_mlp"],
        channel_multiplier=cm,
    )


def _stn_config(sd: dict) -> dict:
    """SpatialTransformer's layout read from t_ema's keys, AUTHORS_STN where a key is missing."""
    linear, stem = _tensor(sd, "stns.0.warp_head.linear.weight", 2), _tensor(sd, "stns.0.convs.0.0.weight", 4)
    num_heads = linear.shape[0] // 4 if linear is not None else AUTHORS_STN["num_heads"]
    stages = len({k.split(".")[3] for k in sd if k.startswith("stns.0.convs.")})
    flow_size = 4 * 2 ** (stages - 1) if stages else AUTHORS_STN["flow_size"]
    if (stages and not 2 <= stages <= 9) or num_heads < 1:
        raise ValueError(f"'t_ema': cannot read the transformer layout ({stages} conv stages, {num_heads} heads)")
    cm = (
        stem.shape[0] / stylegan_channels(flow_size, 1.0)
        if stem is not None and flow_size > 32
        else AUTHORS_STN["channel_multiplier"]
    )
    has_down = any(k.startswith("stns.0.input_downsample") for k in sd) or flow_size == 128
    return dict(
        flow_size=flow_size,
        input_size=2 * flow_size if has_down else flow_size,
        channel_multiplier=cm,
        num_heads=num_heads,
    )


def _build(name: str, cls, **kwargs):
    """cls(**kwargs), with a layout read from the checkpoint that the class refuses as a ValueError."""
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, KeyError, IndexError, AssertionError, ZeroDivisionError) as error:
        raise ValueError(
            f"'{name}': the checkpoint's layout ({', '.join(f'{k}={v}' for k, v in kwargs.items())}) "
            f"is not one {cls.__name__} builds ({error})"
        ) from None


def official_components(path, category: str | None = None, **overrides) -> dict:
    """The networks of a released .pt as GANgealingPipeline components (generator, transformer,
    target, classifier), in eval mode. `category` picks the authors' test-time settings (default:
    the file name's stem when it is a known category); `overrides` set padding_mode,
    similarity_iters or inject_index explicitly. A file that is not such a checkpoint is a
    ValueError of one or two lines: the problem, then what to pass instead."""
    name = releases.release_name(path)
    if name is not None:  # official:NAME -> the downloaded file, the release's settings
        path, category = releases.download_release(name), category or name
    stem = Path(str(path)).stem.lower()
    category = category or (stem if stem in PRETRAINED_TEST_SETTINGS else None)
    if category is not None and category not in PRETRAINED_TEST_SETTINGS:
        raise ValueError(
            f"unknown category {category!r}; choose one of {sorted(PRETRAINED_TEST_SETTINGS)} or pass the settings "
            "explicitly"
        )
    unknown = sorted(set(overrides) - set(DEFAULT_TEST_SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown options {unknown}; GANgealing's importer takes category, {', '.join(DEFAULT_TEST_SETTINGS)}"
        )
    ckpt = read_checkpoint(path)
    settings = {**DEFAULT_TEST_SETTINGS, **PRETRAINED_TEST_SETTINGS.get(category, {})}
    args = ckpt.get("args")
    if isinstance(getattr(args, "inject", None), int) and "inject_index" not in PRETRAINED_TEST_SETTINGS.get(
        category, {}
    ):
        settings["inject_index"] = int(args.inject)
    settings.update(overrides)
    try:
        generator = _build("g_ema", StyleGAN2Generator, **_generator_config(ckpt["g_ema"]))
        load_authors_state(generator, ckpt["g_ema"], "g_ema")
        stn = _stn_config(ckpt["t_ema"])
        k = stn["num_heads"]
        if k > 1 and "classifier" not in ckpt:
            raise ValueError(f"the transformer has {k} cluster heads but the checkpoint has no 'classifier'")
        transformer = _build(
            "t_ema",
            SpatialTransformer,
            **stn,
            padding_mode=settings["padding_mode"],
            similarity_iters=settings["similarity_iters"],
            flip="tv" if k == 1 else "classifier",
        )
        load_authors_state(transformer, ckpt["t_ema"], "t_ema")
        directions, coefficients = _tensor(ckpt["ll"], "directions", 2), _tensor(ckpt["ll"], "coefficients", 2)
        target = _build(
            "ll",
            LearnedTarget,
            num_directions=directions.shape[0] if directions is not None else 1,
            num_heads=coefficients.shape[0] if coefficients is not None else k,
            inject_index=settings["inject_index"],
            num_latents=generator.num_latents,
            style_dim=generator.style_dim,
        )
        load_authors_state(target, ckpt["ll"], "ll")
        classifier = None
        if "classifier" in ckpt:
            logits = _tensor(ckpt["classifier"], "to_logits.weight", 2)
            classifier = _build(
                "classifier",
                ClusterClassifier,
                flow_size=stn["flow_size"],
                input_size=stn["input_size"],
                channel_multiplier=stn["channel_multiplier"],
                num_clusters=logits.shape[0] // 2 if logits is not None else k,
            )
            load_authors_state(classifier, ckpt["classifier"], "classifier")
            classifier.eval()
    except ValueError as error:
        raise ValueError(f"{str(path)!r}: {error}\n{WHAT_TO_PASS[0].upper()}{WHAT_TO_PASS[1:]}.") from None
    return dict(generator=generator.eval(), transformer=transformer.eval(), target=target.eval(), classifier=classifier)


def from_official_checkpoint(path, **options) -> GANgealingPipeline:
    """A GANgealingPipeline from a released .pt or official:NAME (options as in `official_components`:
    `category`, `padding_mode`, `similarity_iters`, `inject_index`)."""
    return GANgealingPipeline(**official_components(path, **options))


# ----------------------------------------------------------------------------- named releases
def release_folder(name: str, cache_dir=None) -> Path:
    """Where release `name` is converted to (a save_pretrained folder once model_index.json is there)."""
    return Path(cache_dir or CONVERTED_CACHE) / "gangealing" / name


def load_release(source: str, cache_dir=None) -> GANgealingPipeline:
    """The pipeline of a named release ("cat" or "official:cat"): converted once into
    release_folder(NAME) and loaded from there afterwards (no network then)."""
    name = releases.release_name(source if str(source).startswith("official:") else f"official:{source}")
    folder = release_folder(name, cache_dir)
    if not (folder / "model_index.json").is_file():
        save_atomic(from_official_checkpoint(f"official:{name}"), folder)
    return GANgealingPipeline.from_pretrained(folder)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="a released GANgealing .pt file (keys g_ema, t_ema, ll, [classifier], args) or official:NAME",
    )
    p.add_argument(
        "--output",
        default=None,
        help="folder for GANgealingPipeline.save_pretrained (official:NAME: default the cache the app reads)",
    )
    p.add_argument("--list", action="store_true", help="list the named releases and where they come from, and exit")
    p.add_argument(
        "--category",
        default=None,
        choices=sorted(PRETRAINED_TEST_SETTINGS),
        help="the authors' test-time settings (default: from the file name)",
    )
    p.add_argument(
        "--padding-mode", default=None, choices=["border", "reflection", "zeros"], help="override the padding mode"
    )
    p.add_argument("--similarity-iters", type=int, default=None, help="override the similarity STN iterations")
    p.add_argument("--inject-index", type=int, default=None, help="override the target's mixing cutoff")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """The command line: 0 when the folder is written; 2, with the problem on stderr, when the file
    is not a GANgealing release or the folder cannot be written."""
    args = parse_args(argv)
    if args.list:
        print(
            f"Named releases (official:NAME): downloaded from {releases.release_url('NAME')}, converted into "
            f"{CONVERTED_CACHE / 'gangealing'}"
        )
        for name, r in releases.RELEASES.items():
            s = {**DEFAULT_TEST_SETTINGS, **PRETRAINED_TEST_SETTINGS[name]}
            print(
                f"  official:{name:<13} {r.resolution} px, {r.trained_on}; padding {s['padding_mode']}, iters "
                f"{s['similarity_iters']}"
            )
        return 0
    if not args.checkpoint or not (args.output or str(args.checkpoint).startswith("official:")):
        print("error: give CHECKPOINT (a .pt file or official:NAME) and --output DIR, or --list", file=sys.stderr)
        return 2
    overrides = {
        k: v
        for k, v in dict(
            padding_mode=args.padding_mode, similarity_iters=args.similarity_iters, inject_index=args.inject_index
        ).items()
        if v is not None
    }
    try:
        if args.output is None and not overrides and args.category is None:  # official:NAME into the cache
            pipe, args.output = load_release(args.checkpoint), release_folder(releases.release_name(args.checkpoint))
        else:
            if args.output is None:
                raise ValueError(
                    "--output DIR is needed when settings are overridden (the cache holds the authors' settings)"
                )
            pipe = from_official_checkpoint(args.checkpoint, category=args.category, **overrides)
            save_atomic(pipe, args.output)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    t = pipe.transformer.config
    print(
        f"wrote {args.output}: {pipe.generator.resolution} px generator, K={t.num_heads}, padding {t.padding_mode}, "
        f"iters {t.similarity_iters}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
