"""Import the authors' released GANgealing checkpoints (wpeebles/gangealing, .pt pickles).

    python -m gangealing.convert_official cat.pt --output checkpoints/gangealing-cat
    python -m gangealing.convert_official car.pt --output checkpoints/gangealing-car --category car
    python -m gangealing.convert_official official:cat --output DIR      (a named release: downloads once)
    python -m gangealing.convert_official --list                         (the named releases)

The file is read with `torch.load(weights_only=True)`, allowing only `argparse.Namespace`
(the pickled training arguments): no arbitrary code runs. A file that is not such a release
(missing, not a checkpoint, truncated, another model's, wrong keys or shapes) is a ValueError
of one or two lines, the problem and what to pass instead; the command prints it and exits 2. Our networks keep the official
state_dict key names, so every tensor maps by name; shapes are checked, and an unknown or
missing key is a ValueError that names it (the authors' loader silently drops keys; we only
skip the constant buffers it skips: input-downsample kernels, `one_hot`, the obsolete `rebias`).
The authors' test-time settings (padding mode, similarity iterations, number of clusters,
target inject index) come from their table of pretrained hyperparameters, keyed by category
(given, or taken from the file name), and are stored in our configs.

Named releases (`official:NAME`, RELEASES below) download from the authors' server (the URL of
their utils/download.py, RELEASE_URL: unverified here, no network) into the torch hub cache;
`load_release` converts them once into CONVERTED_CACHE/gangealing/NAME and loads that folder
afterwards. With HF_HUB_OFFLINE=1 (this project's offline switch) nothing is downloaded.
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

from .layers import stylegan_channels
from .pipeline import GANgealingPipeline
from .stylegan2 import StyleGAN2Generator
from .target import LearnedTarget
from .transformer import ClusterClassifier, SpatialTransformer

# The authors' test-time settings per released model (README of the fixtures, section 3).
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
WHAT_TO_PASS = ("pass one of the authors' released GANgealing files (cat.pt, car.pt, ...: a dict with g_ema, t_ema, ll "
                "[, classifier, args]), or load a converted folder with GANgealingPipeline.from_pretrained")


# ----------------------------------------------------------------------------- named releases
# The eight released models (../shared/reference/gangealing.md) and where the authors' downloader
# fetches them. UNVERIFIED: the URL is recalled from their utils/download.py, not read here.
RELEASES = ("bicycle", "car", "cat", "celeba", "cub", "dog", "horse", "tvmonitor")
RELEASE_URL = "https://efrosgans.eecs.berkeley.edu/gangealing/pretrained/{name}.pt"
DOWNLOAD_CACHE = Path(torch.hub.get_dir()) / "checkpoints" / "gangealing"  # the released .pt files, as downloaded
CONVERTED_CACHE = Path(constants.HF_HOME) / "converted"  # converted folders: CONVERTED_CACHE/gangealing/NAME


def download_url(url: str, path: Path) -> None:
    """Download `url` to `path` (torch.hub's downloader: a temporary file renamed when complete)."""
    torch.hub.download_url_to_file(url, str(path), progress=False)


def release_name(source) -> str | None:
    """NAME for "official:NAME" (checked against RELEASES), None for anything else."""
    if not str(source).startswith("official:"):
        return None
    name = str(source).split(":", 1)[1]
    if name not in RELEASES:
        raise ValueError(f"unknown GANgealing release {name!r}; the named releases are {', '.join('official:' + n for n in RELEASES)}")
    return name


def download_release(name: str) -> Path:
    """The released .pt of `name` in DOWNLOAD_CACHE, downloaded when missing (not when HF_HUB_OFFLINE=1)."""
    path = DOWNLOAD_CACHE / f"{name}.pt"
    if path.is_file():
        return path
    url = RELEASE_URL.format(name=name)
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise ValueError(f"official:{name} is not in the cache ({path}) and this machine is offline (HF_HUB_OFFLINE=1); "
                         f"run once with network access: python -m gangealing.convert_official official:{name} --output DIR")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url(url, path)
    except Exception as error:  # URLError, HTTPError, socket errors: the message says what to do
        raise ValueError(f"official:{name}: downloading {url} failed ({type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}); "
                         f"run once with network access: python -m gangealing.convert_official official:{name} --output DIR "
                         "(the URL is unverified: if it moved, download the file by hand and convert it by path)") from None
    return path


def load_release(name_or_source: str, cache_dir=None) -> GANgealingPipeline:
    """The pipeline of a named release ("cat" or "official:cat"): converted once into
    `cache_dir`/gangealing/NAME (default CONVERTED_CACHE) and loaded from there afterwards."""
    name = release_name(name_or_source if str(name_or_source).startswith("official:") else f"official:{name_or_source}")
    folder = Path(cache_dir or CONVERTED_CACHE) / "gangealing" / name
    if not (folder / "model_index.json").is_file():
        _save_atomic(load_official_checkpoint(f"official:{name}"), folder)
    return GANgealingPipeline.from_pretrained(folder)


def _save_atomic(pipe: GANgealingPipeline, output) -> None:
    """save_pretrained into a temporary sibling, then rename: a reader never sees half a folder."""
    output = Path(output)
    tmp = output.with_name(output.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)


def _shorten(items: list, limit: int = 4) -> str:
    return ", ".join(map(str, items[:limit])) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _torch_load(path: Path):
    """torch.load(weights_only=True) allowing argparse.Namespace only; every failure is a one-line ValueError."""
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a checkpoint file")
    with path.open("rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{str(path)!r} is empty")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises anything from KeyError to RuntimeError on a bad file
        unsafe = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(error))
        if unsafe and not unsafe.group(1).startswith("torch."):
            raise ValueError(f"{str(path)!r} holds pickled Python objects ({unsafe.group(1)}) besides tensors; "
                             "they are not loaded, since unpickling them could run code") from None
        if head.startswith(b"PK") or head.startswith(b"\x80"):  # a torch zip archive or a legacy pickle that breaks off
            detail = "the pickle stream breaks off" if unsafe or not str(error) else str(error).split(". ")[0].splitlines()[0][:120]
            raise ValueError(f"{str(path)!r} is truncated or corrupt: torch.load could not read it ({detail})") from None
        raise ValueError(f"{str(path)!r} is not a PyTorch checkpoint (it starts with {head!r}, not a torch.save header)") from None


def _check_state_dict(state, name: str, path: Path) -> dict:
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r}: '{name}' must be a state_dict (a dict of tensors), got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor) or v.is_meta]
    if bad:
        raise ValueError(f"{str(path)!r}: '{name}' must be a state_dict of tensors with data; {len(bad)} entries are not: {_shorten(bad)}")
    return state


def read_checkpoint(path) -> dict:
    """The checkpoint dict of a released .pt, read with torch.load(weights_only=True) (allowing
    argparse.Namespace only) and checked: the top-level keys and that each network is a state_dict.
    Anything else is a ValueError whose message names the problem and what to pass instead."""
    path = Path(path)
    try:
        ckpt = _torch_load(path)
        if not isinstance(ckpt, dict):
            raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a dict of state_dicts (g_ema, t_ema, ll, ...)")
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise ValueError(f"{str(path)!r} is a single state_dict ({_shorten(list(map(str, ckpt)))}), not GANgealing's dict of "
                             "g_ema / t_ema / ll: another model's weights (e.g. CoCosNet's latest_net_G.pth)")
        unknown = sorted(str(k) for k in set(ckpt) - MODEL_KEYS - TRAINING_STATE_KEYS)
        missing = sorted({"g_ema", "t_ema", "ll"} - set(ckpt))
        if unknown or missing:
            found = "a generator-only training checkpoint (StyleGAN2 or CoordGAN)" if "g_ema" in ckpt and "t_ema" not in ckpt else "not a GANgealing checkpoint"
            raise ValueError(f"{str(path)!r} is {found}: missing top-level keys {missing}, unknown top-level keys {unknown}")
        for name in MODEL_KEYS & set(ckpt):
            _check_state_dict(ckpt[name], name, path)
    except ValueError as error:
        raise ValueError(f"{error}\n{WHAT_TO_PASS[0].upper()}{WHAT_TO_PASS[1:]}.") from None
    return ckpt


def key_problems(model: torch.nn.Module, state: dict) -> list[str]:
    """Unknown, missing and mis-shaped keys of `state` for `model` (the constant buffers the authors
    skip are ignored), as short phrases with a few names and the counts; empty: a match."""
    ours = model.state_dict()
    theirs = {k: v for k, v in state.items() if not _SKIPPED.search(k)}
    unknown = sorted(set(theirs) - set(ours))
    missing = sorted(k for k in set(ours) - set(theirs) if not _SKIPPED.search(k))
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(ours[k].shape)})" for k, v in theirs.items() if k in ours and v.shape != ours[k].shape]
    return [f"{what}: {_shorten(keys)}" for what, keys in (("unknown keys", unknown), ("missing keys", missing), ("wrong shapes", wrong)) if keys]


def load_into(model: torch.nn.Module, state: dict, name: str) -> None:
    """Copy `state` into `model` name for name; unknown/missing keys and shape mismatches are a ValueError naming them."""
    problems = key_problems(model, state)
    if problems:
        raise ValueError(f"'{name}' does not match the network this importer builds: " + "; ".join(problems))
    ours = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if not _SKIPPED.search(k):
                ours[k].copy_(v.to(ours[k].dtype))


def _build(name: str, cls, **kwargs):
    """cls(**kwargs), with a layout read from the checkpoint that the class refuses as a ValueError."""
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, KeyError, IndexError, AssertionError, ZeroDivisionError) as error:
        raise ValueError(f"'{name}': the checkpoint's layout ({', '.join(f'{k}={v}' for k, v in kwargs.items())}) "
                         f"is not one {cls.__name__} builds ({error})") from None


def _generator_config(sd: dict) -> dict:
    try:
        num_layers = len([k for k in sd if k.startswith("noises.noise_")])
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim = sd["style.1.weight"].shape[0]
        resolution = 2 ** ((num_layers - 1) // 2 + 2)
        last = sd[f"to_rgbs.{(num_layers - 1) // 2 - 1}.conv.weight"].shape[2]
    except (KeyError, IndexError) as error:
        found = f"missing {error}" if isinstance(error, KeyError) else "tensors of unexpected rank"
        raise ValueError(f"'g_ema': cannot read the generator layout ({found})") from None
    if not 8 <= resolution <= 4096:
        raise ValueError(f"'g_ema': cannot read the generator layout ({num_layers} noise buffers give no resolution in 8..4096)")
    cm = last / stylegan_channels(resolution, 1.0) if resolution > 32 else 2.0
    return dict(resolution=resolution, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm)


def _stn_config(sd: dict) -> dict:
    try:
        num_heads = sd["stns.0.warp_head.linear.weight"].shape[0] // 4
        blocks = len({k.split(".")[3] for k in sd if k.startswith("stns.0.convs.")}) - 1
        stem = sd["stns.0.convs.0.0.weight"].shape[0]
    except (KeyError, IndexError) as error:
        found = f"missing {error}" if isinstance(error, KeyError) else "tensors of unexpected rank"
        raise ValueError(f"'t_ema': cannot read the transformer layout ({found})") from None
    if not 1 <= blocks <= 8 or num_heads < 1:
        raise ValueError(f"'t_ema': cannot read the transformer layout ({blocks + 1} conv stages, {num_heads} heads)")
    flow_size = 4 * 2**blocks
    has_down = any(k.startswith("stns.0.input_downsample") for k in sd) or flow_size == 128
    cm = stem / stylegan_channels(flow_size, 1.0) if flow_size > 32 else 0.5
    return dict(flow_size=flow_size, input_size=2 * flow_size if has_down else flow_size, channel_multiplier=cm, num_heads=num_heads)


def official_components(path, category: str | None = None, **overrides) -> dict:
    """The networks of a released .pt as GANgealingPipeline components (generator, transformer,
    target, classifier), in eval mode. `category` picks the authors' test-time settings (default:
    the file name's stem when it is a known category); `overrides` set padding_mode,
    similarity_iters or inject_index explicitly. A file that is not such a checkpoint is a
    ValueError of one or two lines: the problem, then what to pass instead."""
    name = release_name(path)
    if name is not None:  # official:NAME -> the downloaded file, the release's settings
        path, category = download_release(name), category or name
    stem = Path(str(path)).stem.lower()
    category = category or (stem if stem in PRETRAINED_TEST_SETTINGS else None)
    if category is not None and category not in PRETRAINED_TEST_SETTINGS:
        raise ValueError(f"unknown category {category!r}; choose one of {sorted(PRETRAINED_TEST_SETTINGS)} or pass the settings explicitly")
    unknown = sorted(set(overrides) - set(DEFAULT_TEST_SETTINGS))
    if unknown:
        raise ValueError(f"unknown options {unknown}; GANgealing's importer takes category, {', '.join(DEFAULT_TEST_SETTINGS)}")
    ckpt = read_checkpoint(path)
    settings = {**DEFAULT_TEST_SETTINGS, **PRETRAINED_TEST_SETTINGS.get(category, {})}
    args = ckpt.get("args")
    if isinstance(getattr(args, "inject", None), int) and "inject_index" not in PRETRAINED_TEST_SETTINGS.get(category, {}):
        settings["inject_index"] = int(args.inject)
    settings.update(overrides)
    try:
        generator = _build("g_ema", StyleGAN2Generator, **_generator_config(ckpt["g_ema"]))
        load_into(generator, ckpt["g_ema"], "g_ema")
        stn = _stn_config(ckpt["t_ema"])
        k = stn["num_heads"]
        if k > 1 and "classifier" not in ckpt:
            raise ValueError(f"the transformer has {k} cluster heads but the checkpoint has no 'classifier'")
        transformer = _build("t_ema", SpatialTransformer, **stn, padding_mode=settings["padding_mode"],
                             similarity_iters=settings["similarity_iters"], flip="tv" if k == 1 else "classifier")
        load_into(transformer, ckpt["t_ema"], "t_ema")
        ll = ckpt["ll"]
        if not all(isinstance(ll.get(key), torch.Tensor) and ll[key].dim() == 2 for key in ("coefficients", "directions")):
            raise ValueError(f"'ll' needs 2-d tensors 'coefficients' and 'directions'; it has {_shorten(sorted(ll)) or 'no keys'}")
        target = _build("ll", LearnedTarget, num_directions=ll["directions"].shape[0], num_heads=ll["coefficients"].shape[0],
                        inject_index=settings["inject_index"], num_latents=generator.num_latents, style_dim=generator.style_dim)
        load_into(target, ll, "ll")
        classifier = None
        if "classifier" in ckpt:
            logits = ckpt["classifier"].get("to_logits.weight")
            if not isinstance(logits, torch.Tensor) or logits.dim() == 0:
                raise ValueError("'classifier' has no 'to_logits.weight' tensor")
            classifier = _build("classifier", ClusterClassifier, flow_size=stn["flow_size"], input_size=stn["input_size"],
                                channel_multiplier=stn["channel_multiplier"], num_clusters=logits.shape[0] // 2)
            load_into(classifier, ckpt["classifier"], "classifier")
            classifier.eval()
    except ValueError as error:
        raise ValueError(f"{str(path)!r}: {error}\nThis is not the layout of the authors' GANgealing releases; {WHAT_TO_PASS}.") from None
    return dict(generator=generator.eval(), transformer=transformer.eval(), target=target.eval(), classifier=classifier)


def load_official_checkpoint(path, **options) -> GANgealingPipeline:
    """A GANgealingPipeline from a released .pt (options as in `official_components`)."""
    return GANgealingPipeline(**official_components(path, **options))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a released GANgealing .pt file (keys g_ema, t_ema, ll, [classifier], args) or official:NAME")
    p.add_argument("--output", default=None, help="folder for GANgealingPipeline.save_pretrained")
    p.add_argument("--list", action="store_true", help="list the named releases and exit")
    p.add_argument("--category", default=None, choices=sorted(PRETRAINED_TEST_SETTINGS), help="the authors' test-time settings (default: from the file name)")
    p.add_argument("--padding-mode", default=None, choices=["border", "reflection", "zeros"], help="override the padding mode")
    p.add_argument("--similarity-iters", type=int, default=None, help="override the similarity STN iterations")
    p.add_argument("--inject-index", type=int, default=None, help="override the target's mixing cutoff")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """The command line: 0 when the folder is written; 2, with the problem on stderr, when the file
    is not a GANgealing release or the folder cannot be written."""
    args = parse_args(argv)
    if args.list:
        print(f"Named releases (official:NAME, downloaded from {RELEASE_URL}; URL unverified):")
        for name in RELEASES:
            print(f"  official:{name}")
        return 0
    if not args.checkpoint or not args.output:
        print("error: give CHECKPOINT (a .pt file or official:NAME) and --output DIR, or --list", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in dict(padding_mode=args.padding_mode, similarity_iters=args.similarity_iters, inject_index=args.inject_index).items() if v is not None}
    try:
        pipe = load_official_checkpoint(args.checkpoint, category=args.category, **overrides)
        _save_atomic(pipe, args.output)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    t = pipe.transformer.config
    print(f"wrote {args.output}: {pipe.generator.resolution} px generator, K={t.num_heads}, padding {t.padding_mode}, iters {t.similarity_iters}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
