"""Import the authors' released CoCosNet v1 checkpoints (microsoft/CoCosNet) into our networks.

    python -m cocosnet.convert_official checkpoints/celebahq --output runs/cocosnet-celebahq
    python -m cocosnet.convert_official --config celebahq \
        --generator checkpoints/celebahq/latest_net_G.pth \
        --correspondence checkpoints/celebahq/latest_net_Corr.pth --output runs/cocosnet-celebahq
    python -m cocosnet.convert_official official:celebahq [--output DIR]  (a named release: downloaded, converted once)
    python -m cocosnet.convert_official --list                           (the named releases and where they come from)

writes a `save_pretrained` folder that `CoCosNetPipeline.from_pretrained` loads. The release
(ade20k, celebahq, celebahqedge, deepfashion) is recognised from the files' input channels unless
--config names it. In Python, `from_official_checkpoint(path, **options)` returns the pipeline
(this module builds on pipeline.py; the pipeline never imports it).

Key names: our `paper` configs use the authors' own state-dict names (`adaptive_model_seg.layer1.0.weight_orig`,
`head_0.norm_0.mlp_shared.1.weight`, ...), so the mapping is the identity and the work here is
checking: files are read with `torch.load(weights_only=True)`; every tensor must have a counterpart of the
same shape. Spectral norm: the files hold `weight_orig`, `weight_u` and `weight_v` (torch's hook layout);
our `SNConv2d` keeps the same three tensors and, in eval mode, divides by sigma = u^T W v with the stored
vectors, exactly what the authors' inference does.

A bad file is a ValueError of one or two lines, said the same way by the three converters (see
coordgan/convert_official.py); the command prints it and exits 2. Helpers marked `# Copied from`
are copies kept identical on purpose (tests/test_copies.py).

Named releases (`official:NAME`, releases.py) are the authors' Google Drive folders: downloaded
with gdown, told apart by their keys (`release_files`), converted once into
CONVERTED_CACHE/cocosnet/NAME and loaded from that folder afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import constants

from . import releases
from .model import CONFIGS, CoCosNetCorrespondence, CoCosNetGenerator, network_configs
from .pipeline import CoCosNetPipeline

OFFICIAL_CONFIGS = ("ade20k", "celebahq", "celebahqedge", "deepfashion")
CELEBAHQ_GLASSES_CHANNEL = 16
EXPECTED = "a network of the authors' CoCosNet releases"
WHAT_TO_PASS = (
    "Pass the authors' CoCosNet checkpoint folder (latest_net_G.pth and latest_net_Corr.pth) or its latest_net_G.pth "
    "(--correspondence / correspondence= for a Corr file elsewhere); a converted folder loads with "
    "CoCosNetPipeline.from_pretrained."
)
CONVERTED_CACHE = Path(constants.HF_HOME) / "converted"  # converted folders: CONVERTED_CACHE/cocosnet/NAME


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


# ----------------------------------------------------------------------------- CoCosNet's files
def load_official_state_dict(path: str | os.PathLike) -> dict:
    """A plain state_dict from an official .pth file, loaded safely (weights_only=True); a file that
    is not one is a one-line ValueError naming the problem."""
    path = Path(path)
    state = _torch_load(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict of tensors")
    state = {k[7:] if isinstance(k, str) and k.startswith("module.") else k: v for k, v in state.items()}
    what = looks_like(state)
    if what is not None and not what.startswith("CoCosNet's"):
        raise ValueError(f"{str(path)!r} looks like {what}, not {EXPECTED}")
    nested = sorted(str(k) for k, v in state.items() if isinstance(v, dict))
    if nested:
        raise ValueError(
            f"{str(path)!r} is not {EXPECTED}: a dict of state_dicts ({_shorten(nested)}), not one network's state_dict"
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor) or v.is_meta]
    if bad:
        raise ValueError(f"{str(path)!r} does not hold a state_dict of tensors with data: {_shorten(bad)} are not")
    return state


def convert(config: str, generator_state: dict, correspondence_state: dict):
    """(CoCosNetCorrespondence, CoCosNetGenerator) in eval mode holding the official weights."""
    if config not in OFFICIAL_CONFIGS:
        raise ValueError(f"unknown official config {config!r}; choose one of {', '.join(OFFICIAL_CONFIGS)}")
    corr_kwargs, gen_kwargs, _ = network_configs(CONFIGS[config])
    with torch.device("meta"):  # no memory until the weights are assigned
        correspondence = CoCosNetCorrespondence(**corr_kwargs)
        generator = CoCosNetGenerator(**gen_kwargs)
    # the loaded tensors become the parameters (assign): no second copy of the weights, so the peak is
    # the two files' tensors, not those plus the networks (0.29 GB less for the 256 px releases)
    try:
        load_into(correspondence, correspondence_state, "correspondence (latest_net_Corr.pth)")
        load_into(generator, generator_state, "generator (latest_net_G.pth)")
    except ValueError as error:
        raise ValueError(
            f"{error}\nCheck --config / config= ({config}; the releases are {', '.join(OFFICIAL_CONFIGS)}) and that "
            "the "
            "files are the matching latest_net_G.pth / latest_net_Corr.pth of one release."
        ) from None
    return correspondence.eval(), generator.eval()


def official_input_semantics(config: str, label: torch.Tensor) -> torch.Tensor:
    """The authors' preprocessing of the loader's `label` / `label_ref` tensors into the network input.

    ade20k: (B, 1, H, W) class ids -> one-hot over 151 channels; celebahq: (B, 2, H, W) [class id,
    glasses] -> one-hot over 19 channels whose channel 16 is replaced by the glasses mask;
    celebahqedge (15 channels) and deepfashion (20 channels) are used as they are.
    """
    channels = CONFIGS[config]["input_channels"]
    if config == "ade20k":
        return F.one_hot(label[:, 0].long(), channels).permute(0, 3, 1, 2).float()
    if config == "celebahq":
        one_hot = F.one_hot(label[:, 0].long(), channels).permute(0, 3, 1, 2).float()
        one_hot[:, CELEBAHQ_GLASSES_CHANNEL] = label[:, 1].float()
        return one_hot
    return label.float()


GENERATOR_FILE, CORRESPONDENCE_FILE = "latest_net_G.pth", "latest_net_Corr.pth"
# the first layer of the correspondence network sees the input map: its channel count names the release
_FIRST_LAYER = "adaptive_model_seg.layer1.0.weight_orig"
CONFIG_BY_INPUT_CHANNELS = {CONFIGS[name]["input_channels"]: name for name in OFFICIAL_CONFIGS}


def official_files(
    path: str | os.PathLike, correspondence: str | os.PathLike | None = None
) -> tuple[Path, Path | None]:
    """(latest_net_G.pth, latest_net_Corr.pth or None) for `path`: the authors' checkpoint folder
    holding both, or the generator file (its `_Corr` sibling unless `correspondence` names the
    other file; None when neither says where it is)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist")
    if path.is_dir():
        if (path / "model_index.json").is_file():
            raise ValueError(
                f"{str(path)!r} is already a converted (save_pretrained) folder: load it with "
                "CoCosNetPipeline.from_pretrained, or pass it to the app's --cocosnet as it is"
            )
        generator = path / GENERATOR_FILE
        if not generator.is_file():
            raise ValueError(f"the folder {str(path)!r} holds no {GENERATOR_FILE}")
        sibling = path / CORRESPONDENCE_FILE
    else:
        stem = path.stem
        if stem.endswith("_Corr") and correspondence is None:  # the pair named by its other half
            path, correspondence = path.with_name(stem[:-5] + "_G" + path.suffix), path
        generator = path
        sibling = path.with_name(path.stem[:-2] + "_Corr" + path.suffix) if path.stem.endswith("_G") else None
    return generator, Path(correspondence) if correspondence is not None else sibling


def detect_config(correspondence_state: dict, name: str = CORRESPONDENCE_FILE) -> str:
    """The released config whose input channels match the correspondence network's first layer."""
    weight = correspondence_state.get(_FIRST_LAYER)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        what = looks_like(correspondence_state)
        raise ValueError(
            f"{name} looks like {what}, not CoCosNet's correspondence network (latest_net_Corr.pth)"
            if what
            else f"{name} is not CoCosNet's correspondence network (latest_net_Corr.pth): missing keys: {_FIRST_LAYER} "
            f"(4-d; it names the release); its keys: {_shorten(sorted(correspondence_state)) or 'none'}"
        )
    channels = weight.shape[1]
    if channels not in CONFIG_BY_INPUT_CHANNELS:
        raise ValueError(
            f"cannot tell which release this is ({_FIRST_LAYER} has {channels} input channels; the releases have "
            f"{', '.join(f'{n} {c}' for c, n in CONFIG_BY_INPUT_CHANNELS.items())}); "
            f"pass config= (--config) as one of {', '.join(OFFICIAL_CONFIGS)}"
        )
    return CONFIG_BY_INPUT_CHANNELS[channels]


def official_components(
    path: str | os.PathLike, config: str | None = None, correspondence: str | os.PathLike | None = None
) -> dict:
    """CoCosNetPipeline components (correspondence_network, generator) holding a released pair of files.

    `path`: the authors' checkpoint folder (latest_net_G.pth + latest_net_Corr.pth) or the generator
    file; `correspondence`: the other file when it is not the generator's `_Corr` sibling; `config`:
    ade20k, celebahq, celebahqedge or deepfashion (default: recognised from the input channels).
    `path` may also be official:NAME (release_files finds and downloads it).
    Files that are not such a pair are a ValueError of one or two lines: the problem, then what to
    pass instead.
    """
    name = releases.release_name(path)
    if name is not None:  # official:NAME -> the downloaded pair, the release's config
        path, correspondence = release_files(name)
        config = config or name
    try:
        if config is not None and config not in OFFICIAL_CONFIGS:
            raise ValueError(f"unknown official config {config!r}; choose one of {', '.join(OFFICIAL_CONFIGS)}")
        generator_file, correspondence_file = official_files(path, correspondence)
        generator_state = load_official_state_dict(generator_file)  # what the file is, before looking for its pair
        if correspondence_file is None:
            raise ValueError(
                f"{str(generator_file)!r} is not named like the authors' latest_net_G.pth, so its latest_net_Corr.pth "
                "cannot be found beside it: pass correspondence=PATH (--correspondence), or the folder holding both "
                "files"
            )
        if correspondence is None and not correspondence_file.exists():
            raise ValueError(
                f"the correspondence network {str(correspondence_file)!r} (beside {generator_file.name}) does not "
                "exist: "
                f"a CoCosNet release is a pair of files; put {CORRESPONDENCE_FILE} beside it or pass "
                "correspondence=PATH "
                "(--correspondence)"
            )
        correspondence_state = load_official_state_dict(correspondence_file)
        if _FIRST_LAYER in generator_state and "fc.weight" in correspondence_state:
            raise ValueError(
                f"the two files are swapped: {str(generator_file)!r} holds the correspondence network and "
                f"{str(correspondence_file)!r} the generator"
            )
        config = config or detect_config(correspondence_state, repr(str(correspondence_file)))
        corr, gen = convert(config, generator_state, correspondence_state)
    except ValueError as error:
        message = str(error)
        raise ValueError(message if "\n" in message else f"{message}\n{WHAT_TO_PASS}") from None
    return dict(correspondence_network=corr, generator=gen)


def from_official_checkpoint(path: str | os.PathLike, **options) -> CoCosNetPipeline:
    """A CoCosNetPipeline holding a released pair of files or official:NAME (options as in
    `official_components`: `config`, `correspondence`)."""
    return CoCosNetPipeline(**official_components(path, **options))


# ----------------------------------------------------------------------------- named releases
def release_files(name: str) -> tuple[Path, Path]:
    """(generator file, correspondence file) of release `name`: the Drive folder's checkpoints,
    downloaded and told apart by their keys, whatever they are called."""
    found, refused = {}, []
    paths = releases.download_release(name)
    for path in paths:
        try:
            state = load_official_state_dict(path)
        except ValueError as error:
            refused.append(f"{path.name} ({str(error).splitlines()[0].replace(repr(str(path)), 'it')})")
            continue
        if _FIRST_LAYER in state:
            found.setdefault("correspondence", path)
        elif "fc.weight" in state:
            found.setdefault("generator", path)
        else:
            refused.append(f"{path.name} (keys {_shorten(sorted(state))})")
    if len(found) < 2:
        need = " and ".join(f"the {n}" for n in ("generator", "correspondence") if n not in found)
        raise ValueError(
            f"official:{name}: {need} of CoCosNet's release is not among the files of its Drive folder "
            f"({releases.RELEASES[name].folder_id}): {_shorten([p.name for p in paths], 12) or 'none'}"
            + (f"; refused: {'; '.join(refused)}" if refused else "")
        )
    return found["generator"], found["correspondence"]


def release_folder(name: str, cache_dir=None) -> Path:
    """Where release `name` is converted to (a save_pretrained folder once model_index.json is there)."""
    return Path(cache_dir or CONVERTED_CACHE) / "cocosnet" / name


def load_release(source: str, cache_dir=None) -> CoCosNetPipeline:
    """The pipeline of a named release ("celebahq" or "official:celebahq"): converted once into
    release_folder(NAME) and loaded from there afterwards (no network then)."""
    name = releases.release_name(source if str(source).startswith("official:") else f"official:{source}")
    folder = release_folder(name, cache_dir)
    if not (folder / "model_index.json").is_file():
        save_atomic(from_official_checkpoint(f"official:{name}"), folder)
    return CoCosNetPipeline.from_pretrained(folder)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "checkpoint",
        nargs="?",
        default=None,
        help="the authors' checkpoint folder (latest_net_G.pth + latest_net_Corr.pth), latest_net_G.pth, "
        "or official:NAME",
    )
    p.add_argument("--generator", default=None, help="path to latest_net_G.pth (instead of the positional argument)")
    p.add_argument(
        "--correspondence", default=None, help="path to latest_net_Corr.pth (default: beside the generator file)"
    )
    p.add_argument(
        "--config",
        default=None,
        choices=OFFICIAL_CONFIGS,
        help="which released model the files are (default: recognised from the files)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="folder for the save_pretrained export (official:NAME: default the cache the app reads)",
    )
    p.add_argument("--list", action="store_true", help="list the named releases and where they come from, and exit")
    args = p.parse_args(argv)
    if args.list:
        return args
    if (args.checkpoint is None) == (args.generator is None):
        p.error(
            "give the checkpoint folder (or latest_net_G.pth) either as the positional argument or as --generator, once"
        )
    args.checkpoint = args.checkpoint or args.generator
    if args.output is None and not str(args.checkpoint).startswith("official:"):
        p.error("give --output DIR (only official:NAME has a default: the cache the app reads)")
    return args


def main(argv=None) -> int:
    """The command line: 0 when the folder is written; 2, with the problem on stderr, when the files
    are not a CoCosNet release or the folder cannot be written."""
    args = parse_args(argv)
    if args.list:
        print(
            f"Named releases (official:NAME): the authors' Google Drive folders, downloaded with gdown, converted into "
            f"{CONVERTED_CACHE / 'cocosnet'}"
        )
        for name, r in releases.RELEASES.items():
            print(f"  official:{name:<13} {r.resolution} px, {r.task}, {r.trained_on}; Drive folder {r.folder_id}")
        return 0
    try:
        if args.output is None:  # official:NAME into the cache
            pipe, args.output = (
                load_release(args.checkpoint),
                str(release_folder(releases.release_name(args.checkpoint))),
            )
        else:
            pipe = from_official_checkpoint(args.checkpoint, config=args.config, correspondence=args.correspondence)
            save_atomic(pipe, args.output)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = pipe.correspondence_network.config
    print(
        f"wrote {args.output} ({config.input_kind} input, {config.input_channels} channels); "
        f"load it with CoCosNetPipeline.from_pretrained({args.output!r})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
