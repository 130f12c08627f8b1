"""Import the authors' CoordGAN checkpoints (NVlabs/CoordGAN train.py / train-encoder.py files).

    python -m coordgan.convert_official celebA_128.pt --encoder celebA_enc.pt --output checkpoints/coordgan-celebA
    python -m coordgan.convert_official celebA_512.pt --output checkpoints/coordgan-celebA-512
    python -m coordgan.convert_official official:celebA [--output DIR]  (a named release: downloaded, converted once)
    python -m coordgan.convert_official --list                            (the named releases and where they come from)

In Python, `from_official_checkpoint(path, **options)` returns a CoordGANPipeline (this module
builds on pipeline.py; the pipeline never imports it).

The file is read with `torch.load(weights_only=True)` (allowing only `argparse.Namespace`): no
arbitrary code runs. train.py writes {g, d, g_ema, g_optim, d_optim, d_patch}, train-encoder.py
{g, e, g_ema, g_optim}; we take `g_ema` and, when present, the encoder `e` (from the same file or
from --encoder). The files hold no constructor arguments: the layout (128 or 512 px) is read from
an `args` entry when a file has one, else from the keys, and --config names one explicitly.

Generator: our CoordGANGenerator with the authors' canonical grid and upsampling (configs
celebA_128 / stanfordcar_128 / afhqcat_128 / celebA_512 in model.CONFIGS), and a key map from
their names (style/struc, conv1, convs.N, to_rgb1, to_rgbs.N, lff, foldnet) onto ours: the two
networks compute the same function, so one generator class keeps every pipeline feature. Encoder:
CoordGANOfficialEncoder keeps the authors' layer names, so `e` loads name for name. Every tensor is
mapped and shape-checked; the constant FIR kernels must hold the constructor's values.

A bad file is a ValueError of one or two lines, said the same way by the three converters
(CoordGAN, GANgealing, CoCosNet): what is wrong (does not exist, not a checkpoint, truncated,
pickled code; "looks like <another model's checkpoint>"; unknown keys, missing keys, wrong shapes,
a few names and the count), then what to pass instead. The command prints it and exits 2. The
helpers marked `# Copied from` are this module's, copied on purpose (the packages are
self-contained) and kept identical by tests/test_copies.py.

Named releases (`official:NAME`, releases.py) are found in the authors' Hugging Face dataset by a
rule and classified by their keys (`release_files`); `load_release` converts one once into
CONVERTED_CACHE/coordgan/NAME and loads that folder afterwards.
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
from .encoder import CoordGANOfficialEncoder
from .layers import fir_kernel
from .model import CONFIGS, CoordGANGenerator
from .pipeline import CoordGANPipeline

OFFICIAL_CONFIGS = ("celebA_128", "stanfordcar_128", "afhqcat_128", "celebA_512")
TOP_LEVEL_KEYS = {"g", "d", "g_ema", "e", "g_optim", "d_optim", "d_patch", "args"}
EXPECTED = "one of the authors' CoordGAN checkpoints"
WHAT_TO_PASS = (
    "pass a checkpoint written by the authors' CoordGAN train.py (g, d, g_ema, ...) or train-encoder.py "
    "(g, e, g_ema, g_optim), or load a converted folder with CoordGANPipeline.from_pretrained"
)
# The importer computes the mean codes that truncation pulls towards (the authors' code has no
# truncation): this many mapped latents from this seed.
CODE_MEAN_SAMPLES, CODE_MEAN_SEED = 4096, 0
CONVERTED_CACHE = Path(constants.HF_HOME) / "converted"  # converted folders: CONVERTED_CACHE/coordgan/NAME


# ------------------------------------------------------------------------- reading a file (the originals of the copies)
def _shorten(items, limit: int = 4) -> str:
    """A few items, then the count: "a, b, c, d, ... (12 in all)"."""
    items = [str(item) for item in items]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


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


def load_into(model: torch.nn.Module, state: dict, name: str) -> None:
    """Copy `state` into `model` name for name; unknown, missing or mis-shaped keys are a ValueError
    naming them. A model built on the meta device takes the file's tensors as they are (no copy)."""
    ours = model.state_dict()
    problems = key_problems({k: tuple(v.shape) for k, v in ours.items()}, state)
    if problems:
        raise ValueError(f"'{name}' does not match the network this importer builds: " + "; ".join(problems))
    state = {k: v.to(ours[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=any(t.is_meta for t in ours.values()))


def save_atomic(pipe, output) -> None:
    """save_pretrained into a temporary sibling, then rename: a reader never sees half a folder."""
    output = Path(output)
    tmp = output.with_name(output.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)


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


# ----------------------------------------------------------------------------- CoordGAN's files
def read_checkpoint(path, need: str = "g_ema") -> dict:
    """The checkpoint dict of an authors' file, checked: its top-level keys and that `need` (g_ema
    or e) is a state_dict. A bare generator state_dict counts as {'g_ema': it}. Anything else is a
    ValueError whose message names the problem and what to pass instead."""
    path = Path(path)
    try:
        ckpt = _torch_load(path)
        if not isinstance(ckpt, dict):
            raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a dict of state_dicts (g_ema, e, ...)")
        if (
            ckpt
            and all(isinstance(v, torch.Tensor) for v in ckpt.values())
            and "foldnet.conv1_1.weight" in ckpt
            and need == "g_ema"
        ):
            ckpt = {"g_ema": ckpt}  # a generator's state_dict saved alone
        what = looks_like(ckpt)
        if what is not None and not what.startswith("a CoordGAN train"):
            raise ValueError(f"{str(path)!r} looks like {what}, not {EXPECTED}")
        unknown = sorted(str(k) for k in set(ckpt) - TOP_LEVEL_KEYS)
        missing = [need] if need not in ckpt else []
        if unknown or missing:
            found = "; ".join(
                f"{w}: {_shorten(k)}"
                for w, k in (("unknown top-level keys", unknown), ("missing top-level keys", missing))
                if k
            )
            raise ValueError(
                f"{str(path)!r} is not {EXPECTED}: {found}"
                + (" (train-encoder.py writes the encoder 'e')" if need == "e" and missing else "")
            )
        for name in ({"g_ema", "e"} & set(ckpt)) | {need}:
            _check_state_dict(ckpt[name], name, path)
    except ValueError as error:
        raise ValueError(f"{error}\n{WHAT_TO_PASS[0].upper()}{WHAT_TO_PASS[1:]}.") from None
    return ckpt


# ----------------------------------------------------------------------------- the key map
def generator_key_map(generator: CoordGANGenerator) -> dict:
    """official key -> (official shape, [(our key, transform)]) for a generator built from one of
    the official configs; a constant buffer maps to ("constant", its value)."""
    ours = generator.state_dict()
    c = generator.config
    out = {}

    def same(official, key):
        out[official] = (tuple(ours[key].shape), [(key, lambda t: t)])

    for official, mine in (("style", "texture_mapping"), ("struc", "structure_mapping")):
        for i in range(1, c.mapping_layers + 1):
            for p in ("weight", "bias"):
                same(f"{official}.{i}.{p}", f"{mine}.{i}.{p}")
    squeeze = lambda t: t[0]  # noqa: E731  (1, out, in, k, k) grouped-conv weight -> (out, in, k, k)
    convs = [("conv1", "convs.0")] + [(f"convs.{n}", f"convs.{n + 1}") for n in range(2 * c.num_pairs)]
    convs += [(f"convs.{2 * c.num_pairs + n}", f"up_convs.{n}") for n in range(len(generator.up_convs))]
    for official, mine in convs:
        out[f"{official}.conv.weight"] = ((1, *ours[f"{mine}.conv.weight"].shape), [(f"{mine}.conv.weight", squeeze)])
        for p in ("modulation.weight", "modulation.bias"):
            same(f"{official}.conv.{p}", f"{mine}.conv.{p}")
        same(f"{official}.noise.weight", f"{mine}.noise.weight")
        same(f"{official}.activate.bias", f"{mine}.bias")
        if mine.startswith("up_") and generator.up_convs[int(mine.split(".")[1])].upsample:
            out[f"{official}.conv.blur.kernel"] = ((4, 4), [("constant", fir_kernel())])
    rgbs = [("to_rgb1", "to_rgbs.0")] + [(f"to_rgbs.{k}", f"to_rgbs.{k + 1}") for k in range(c.num_pairs)]
    rgbs += [(f"to_rgbs.{c.num_pairs + k}", f"up_rgbs.{k}") for k in range(len(generator.up_rgbs))]
    for official, mine in rgbs:
        out[f"{official}.bias"] = ((1, 3, 1, 1), [(f"{mine}.bias", lambda t: t.reshape(3))])
        out[f"{official}.conv.weight"] = ((1, *ours[f"{mine}.conv.weight"].shape), [(f"{mine}.conv.weight", squeeze)])
        for p in ("modulation.weight", "modulation.bias"):
            same(f"{official}.conv.{p}", f"{mine}.conv.{p}")
        if mine.startswith("up_"):
            out[f"{official}.upsample.kernel"] = ((4, 4), [("constant", fir_kernel())])
    same("lff.ffm.conv.weight", "fourier.conv.weight")
    same("lff.ffm.conv.bias", "fourier.conv.bias")
    # foldnet: Conv1d(2 + w_dim, hidden, 1) on [x, y, w_s]; ours splits the first layer into coordinate and code columns
    h = c.warp_hidden
    out["foldnet.conv1_1.weight"] = (
        (h, 2 + c.w_dim, 1),
        [("warping.coord_in.weight", lambda t: t[:, :2, 0]), ("warping.code_in.weight", lambda t: t[:, 2:, 0])],
    )
    same("foldnet.conv1_1.bias", "warping.coord_in.bias")
    out["foldnet.conv1_2.weight"] = ((h, h, 1), [("warping.hidden.weight", lambda t: t[..., 0])])
    same("foldnet.conv1_2.bias", "warping.hidden.bias")
    out["foldnet.conv1_3.weight"] = ((2, h, 1), [("warping.out.weight", lambda t: t[..., 0])])
    same("foldnet.conv1_3.bias", "warping.out.bias")
    return out


def load_generator_state(generator: CoordGANGenerator, state: dict, name: str = "g_ema") -> None:
    """Copy the authors' generator state_dict into ours through the key map; unknown, missing or
    mis-shaped keys, and constant kernels that differ from the constructor's, are a ValueError."""
    key_map = generator_key_map(generator)
    problems = key_problems({k: shape for k, (shape, _) in key_map.items()}, state)
    changed = [
        k
        for k, (_, targets) in key_map.items()
        if targets[0][0] == "constant"
        and k in state
        and state[k].shape == targets[0][1].shape
        and not torch.allclose(state[k].float(), targets[0][1])
    ]
    if changed:
        problems.append(f"constant FIR kernels that differ from StyleGAN2's: {_shorten(changed)}")
    if problems:
        raise ValueError(f"'{name}' does not match the network this importer builds: " + "; ".join(problems))
    ours = generator.state_dict()
    covered = set()
    with torch.no_grad():
        for k, (_, targets) in key_map.items():
            for key, transform in targets:
                if key != "constant":
                    ours[key].copy_(transform(state[k]).to(ours[key].dtype))
                    covered.add(key)
    left = sorted(
        set(generator.state_dict()) - covered - {"canonical_coords", "structure_code_mean", "texture_code_mean"}
    )
    if left:  # the map must cover every weight of ours; a gap is a bug here, not a bad file
        raise RuntimeError(f"the key map leaves {_shorten(left)} unset")


def load_encoder_state(encoder: CoordGANOfficialEncoder, state: dict, name: str = "e") -> None:
    ours = encoder.state_dict()
    changed = [
        k
        for k in ours
        if k.endswith("Blur.kernel")
        and k in state
        and state[k].shape == ours[k].shape
        and not torch.allclose(state[k].float(), ours[k])
    ]
    if changed:
        raise ValueError(
            f"'{name}' does not match the network this importer builds: constant blur kernels that differ "
            f"from the authors' [1, 2, 1] / [1] filters: {_shorten(changed)}"
        )
    load_into(encoder, state, name)


def _config_name(ckpt: dict, config: str | None) -> str:
    """The official config: given, else from an 'args' entry's size, else from the generator's keys."""
    if config is not None:
        if config not in OFFICIAL_CONFIGS:
            raise ValueError(f"unknown config {config!r}; choose one of {', '.join(OFFICIAL_CONFIGS)}")
        return config
    args = ckpt.get("args")
    size = getattr(args, "size", None) if not isinstance(args, dict) else args.get("size")
    if size is None:  # the 512 px layout has the two upsampling stages' convs.10 .. convs.13
        size = 512 if "convs.10.conv.weight" in ckpt["g_ema"] else 128
    if int(size) not in (128, 512):
        raise ValueError(f"the file's args say size={size}; the authors released 128 and 512 px models (pass --config)")
    return "celebA_512" if int(size) == 512 else "celebA_128"


def official_components(path, encoder=None, config: str | None = None, code_means: bool = True) -> dict:
    """The networks of an authors' checkpoint as CoordGANPipeline components (generator, encoder).

    Args:
        path: train.py's or train-encoder.py's .pt (the generator is its `g_ema`; train-encoder.py's
            file also gives the encoder `e`), or official:NAME (release_files finds and downloads it).
        encoder: a separate train-encoder.py file whose `e` is the encoder (optional).
        config: one of OFFICIAL_CONFIGS (default: read from the file).
        code_means: also compute the mean structure/texture codes that truncation pulls towards.

    Returns:
        dict(generator=..., encoder=... or None), in eval mode. A file that is not such a checkpoint
        is a ValueError of one or two lines: the problem, then what to pass instead.
    """
    name = releases.release_name(path)
    if name is not None:  # official:NAME -> the downloaded files and the release's config
        files = release_files(name)
        path, encoder, config = (
            files["generator"],
            encoder or files["encoder"],
            config or releases.RELEASES[name].config,
        )
    ckpt = read_checkpoint(path)
    enc_path = path if encoder is None else encoder
    enc_ckpt = read_checkpoint(encoder, need="e") if encoder is not None else ckpt
    where = path
    try:
        name = _config_name(ckpt, config)
        generator = CoordGANGenerator(**CONFIGS[name])
        load_generator_state(generator, ckpt["g_ema"])
        official_encoder = None
        if "e" in enc_ckpt:
            where = enc_path
            official_encoder = CoordGANOfficialEncoder()
            load_encoder_state(official_encoder, enc_ckpt["e"])
    except ValueError as error:
        raise ValueError(f"{str(where)!r}: {error}\n{WHAT_TO_PASS[0].upper()}{WHAT_TO_PASS[1:]}.") from None
    if code_means:
        generator.update_code_means(CODE_MEAN_SAMPLES, torch.Generator().manual_seed(CODE_MEAN_SEED))
    return dict(generator=generator.eval(), encoder=official_encoder.eval() if official_encoder is not None else None)


def from_official_checkpoint(path, **options) -> CoordGANPipeline:
    """A CoordGANPipeline from an authors' checkpoint or official:NAME (options as in `official_components`)."""
    return CoordGANPipeline(**official_components(path, **options))


# ----------------------------------------------------------------------------- named releases
def release_files(name: str) -> dict:
    """dict(generator=path, encoder=path or None) of release `name`: the dataset's candidate files
    (releases.candidates) downloaded one by one and classified by their keys, until the release's
    generator (at its resolution) and, where the authors released one, its encoder are found. When
    none fits, the ValueError lists what the dataset holds."""
    release = releases.RELEASES[name]
    files = releases.repo_files(name)
    found, refused = {}, []
    for filename in releases.candidates(name, files):
        path = releases.download(name, filename)
        try:
            ckpt = read_checkpoint(path)
        except ValueError as error:
            refused.append(f"{filename} ({str(error).splitlines()[0].replace(repr(str(path)), 'it')})")
            continue
        resolution = 512 if "convs.10.conv.weight" in ckpt["g_ema"] else 128
        if "e" in ckpt:
            found.setdefault("encoder", path)
        if resolution == release.resolution and ("e" not in ckpt or "generator" not in found):
            found["generator"] = path  # train.py's file first; train-encoder.py's g_ema is the same generator
        if "generator" in found and ("encoder" in found or not release.encoder):
            break
    if "generator" not in found:
        kept = [f for f in files if not f.startswith("data/")]
        raise ValueError(
            f"official:{name}: no {release.resolution} px CoordGAN generator among the files of "
            f"{releases.RELEASE_REPO} "
            f"whose names mention {' or '.join(release.words)}"
            + (f"; refused: {'; '.join(refused)}" if refused else "")
            + f"; the dataset holds {_shorten(kept, 12)} (and {len(files) - len(kept)} files in data/)"
        )
    return dict(generator=found["generator"], encoder=found.get("encoder"))


def release_folder(name: str, cache_dir=None) -> Path:
    """Where release `name` is converted to (a save_pretrained folder once model_index.json is there)."""
    return Path(cache_dir or CONVERTED_CACHE) / "coordgan" / name


def load_release(source: str, cache_dir=None) -> CoordGANPipeline:
    """The pipeline of a named release ("celebA" or "official:celebA"): converted once into
    release_folder(NAME) and loaded from there afterwards (no network then)."""
    name = releases.release_name(source if str(source).startswith("official:") else f"official:{source}")
    folder = release_folder(name, cache_dir)
    if not (folder / "model_index.json").is_file():
        save_atomic(from_official_checkpoint(f"official:{name}"), folder)
    return CoordGANPipeline.from_pretrained(folder)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="the authors' train.py or train-encoder.py .pt file, or official:NAME (see --list)",
    )
    p.add_argument(
        "--encoder", default=None, help="a train-encoder.py .pt whose 'e' is the encoder (when CHECKPOINT has none)"
    )
    p.add_argument(
        "--output",
        default=None,
        help="folder for CoordGANPipeline.save_pretrained (official:NAME: default the cache the app reads)",
    )
    p.add_argument("--list", action="store_true", help="list the named releases and where they come from, and exit")
    p.add_argument(
        "--config", default=None, choices=OFFICIAL_CONFIGS, help="the authors' config (default: read from the file)"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    """The command line: 0 when the folder is written; 2, with the problem on stderr, when the file
    is not an authors' CoordGAN checkpoint or the folder cannot be written."""
    args = parse_args(argv)
    if args.list:
        print(
            f"Named releases (official:NAME): files of the Hugging Face dataset {releases.RELEASE_REPO}, found by "
            "their names "
            "and classified by their keys; converted into " + str(CONVERTED_CACHE / "coordgan")
        )
        for name, r in releases.RELEASES.items():
            print(
                f"  official:{name:<12} {r.resolution} px, {r.trained_on}; "
                f"{'generator + encoder' if r.encoder else 'generator only'}; "
                f"files mentioning {' or '.join(r.words)}"
            )
        return 0
    if not args.checkpoint or not (args.output or str(args.checkpoint).startswith("official:")):
        print("error: give CHECKPOINT (a .pt file or official:NAME) and --output DIR, or --list", file=sys.stderr)
        return 2
    try:
        if args.output is None:  # official:NAME into the cache
            pipe, args.output = load_release(args.checkpoint), release_folder(releases.release_name(args.checkpoint))
        else:
            pipe = from_official_checkpoint(args.checkpoint, encoder=args.encoder, config=args.config)
            save_atomic(pipe, args.output)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    g = pipe.generator
    encoder = (
        "with the encoder"
        if pipe.encoder is not None
        else "no encoder (label propagation on real images needs --encoder)"
    )
    print(f"wrote {args.output}: {g.resolution} px generator, {encoder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
