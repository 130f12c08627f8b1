"""Import the authors' CoordGAN checkpoints (NVlabs/CoordGAN train.py / train-encoder.py files).

    python -m coordgan.convert_official celebA_128.pt --encoder celebA_enc.pt --output checkpoints/coordgan-celebA
    python -m coordgan.convert_official celebA_512.pt --output checkpoints/coordgan-celebA-512
    python -m coordgan.convert_official official:celebA --output DIR      (a named release: downloads once)
    python -m coordgan.convert_official --list                            (the named releases)

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
mapped and shape-checked; unknown, missing and mis-shaped keys are named (a few, with counts); the
constant FIR kernels must hold the constructor's values. A file that is not such a checkpoint
(missing, not a checkpoint, truncated, another model's) is a ValueError of one or two lines; the
command prints it and exits 2.

Named releases (`official:NAME`, RELEASES below) download with huggingface_hub from the first
author's dataset repository into the Hugging Face cache; `load_release` converts them once into
CONVERTED_CACHE/coordgan/NAME and loads that folder afterwards. The file names in RELEASES could
not be checked offline (the repository lists 9 files in coordgan_checkpoints/): if one is wrong,
the error names it, and a local file can always be converted by path.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from .encoder import CoordGANOfficialEncoder
from .layers import fir_kernel
from .model import CONFIGS, CoordGANGenerator
from .pipeline import CoordGANPipeline

OFFICIAL_CONFIGS = ("celebA_128", "stanfordcar_128", "afhqcat_128", "celebA_512")
TOP_LEVEL_KEYS = {"g", "d", "g_ema", "e", "g_optim", "d_optim", "d_patch", "args"}
WHAT_TO_PASS = ("pass a checkpoint written by the authors' CoordGAN train.py (g, d, g_ema, ...) or train-encoder.py "
                "(g, e, g_ema, g_optim), or load a converted folder with CoordGANPipeline.from_pretrained")
# The importer computes the mean codes that truncation pulls towards (the authors' code has no
# truncation): this many mapped latents from this seed.
CODE_MEAN_SAMPLES, CODE_MEAN_SEED = 4096, 0

# ----------------------------------------------------------------------------- named releases
RELEASE_REPO = "JitengMu/CVPR2022_CoordGAN_release"  # a Hugging Face *dataset* repository
RELEASE_FOLDER = "coordgan_checkpoints"
# official:NAME -> the files in RELEASE_FOLDER and the authors' config. UNVERIFIED: the names follow
# the authors' config names (configs/*.yaml) and could not be listed offline. The 512 px model was
# fine-tuned from the 128 px one with the warp network and structure mapping frozen, so the celebA
# encoder's structure codes fit it (its 12-entry W+ renders at 128 px).
RELEASES = {
    "celebA": dict(generator="celebA_128.pt", encoder="celebA_enc.pt", config="celebA_128"),
    "celebA-512": dict(generator="celebA_512.pt", encoder="celebA_enc.pt", config="celebA_512"),
    "stanfordcar": dict(generator="stanfordcar_128.pt", encoder="stanfordcar_enc.pt", config="stanfordcar_128"),
    "afhqcat": dict(generator="afhqcat_128.pt", encoder=None, config="afhqcat_128"),
}
CONVERTED_CACHE = Path(constants.HF_HOME) / "converted"  # converted folders: CONVERTED_CACHE/coordgan/NAME


def release_name(source) -> str | None:
    """NAME for "official:NAME" (checked against RELEASES), None for anything else."""
    if not str(source).startswith("official:"):
        return None
    name = str(source).split(":", 1)[1]
    if name not in RELEASES:
        raise ValueError(f"unknown CoordGAN release {name!r}; the named releases are {', '.join('official:' + n for n in RELEASES)}")
    return name


def download_release(name: str) -> dict:
    """Local paths of a named release's files (generator, encoder or None), from the Hugging Face
    cache, downloading them when online. Offline and not cached: a ValueError saying what to run."""
    release = RELEASES[name]
    paths = {}
    for role in ("generator", "encoder"):
        if release[role] is None:
            paths[role] = None
            continue
        filename = f"{RELEASE_FOLDER}/{release[role]}"
        try:
            paths[role] = hf_hub_download(RELEASE_REPO, filename, repo_type="dataset")
        except LocalEntryNotFoundError:
            raise ValueError(f"official:{name} is not in the Hugging Face cache and cannot be downloaded here (offline: HF_HUB_OFFLINE=1 or no network; {filename} of the dataset "
                             f"{RELEASE_REPO}); run once with network access: python -m coordgan.convert_official official:{name} --output DIR") from None
        except (EntryNotFoundError, RepositoryNotFoundError):
            raise ValueError(f"official:{name}: {filename} is not in the dataset {RELEASE_REPO} (the file names of "
                             "coordgan.convert_official.RELEASES are unverified); download the file and convert it by path") from None
        except (HfHubHTTPError, OSError) as error:
            raise ValueError(f"official:{name}: downloading {filename} from {RELEASE_REPO} failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    return paths


def load_release(name_or_source: str, cache_dir=None) -> CoordGANPipeline:
    """The pipeline of a named release ("celebA" or "official:celebA"): converted once into
    `cache_dir`/coordgan/NAME (default CONVERTED_CACHE) and loaded from there afterwards."""
    name = release_name(name_or_source if str(name_or_source).startswith("official:") else f"official:{name_or_source}")
    folder = Path(cache_dir or CONVERTED_CACHE) / "coordgan" / name
    if not (folder / "model_index.json").is_file():
        save_atomic(load_official_checkpoint(f"official:{name}"), folder)
    return CoordGANPipeline.from_pretrained(folder)


def _shorten(items: list, limit: int = 4) -> str:
    return ", ".join(map(str, items[:limit])) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# ----------------------------------------------------------------------------- reading a file
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
            return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(b"PK"))
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


def read_checkpoint(path, need: str = "g_ema") -> dict:
    """The checkpoint dict of an authors' file, checked: its top-level keys and that `need` (g_ema
    or e) is a state_dict. A bare generator state_dict counts as {'g_ema': it}. Anything else is a
    ValueError whose message names the problem and what to pass instead."""
    path = Path(path)
    try:
        ckpt = _torch_load(path)
        if not isinstance(ckpt, dict):
            raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a dict of state_dicts (g_ema, e, ...)")
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            if "foldnet.conv1_1.weight" in ckpt and need == "g_ema":
                ckpt = {"g_ema": ckpt}  # a generator's state_dict saved alone
            else:
                raise ValueError(f"{str(path)!r} is a single state_dict ({_shorten(list(map(str, ckpt)))}), not CoordGAN's dict of "
                                 "g / g_ema / e: another model's weights")
        if {"t_ema", "ll"} & set(ckpt):
            raise ValueError(f"{str(path)!r} is a GANgealing checkpoint (it has {_shorten(sorted(map(str, {'t_ema', 'll'} & set(ckpt))))}), not CoordGAN's")
        unknown = sorted(str(k) for k in set(ckpt) - TOP_LEVEL_KEYS)
        if unknown or need not in ckpt:
            what = "the encoder entry 'e' (train-encoder.py writes it)" if need == "e" else "'g_ema'"
            raise ValueError(f"{str(path)!r} is not a CoordGAN checkpoint with {what}: top-level keys {_shorten(sorted(map(str, ckpt)))}"
                             + (f", unknown {_shorten(unknown)}" if unknown else ""))
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
    # foldnet: Conv1d(2 + w_dim, hidden, 1) on [x, y, w_s]; ours splits the first layer into its coordinate and code columns
    h = c.warp_hidden
    out["foldnet.conv1_1.weight"] = ((h, 2 + c.w_dim, 1), [("warping.coord_in.weight", lambda t: t[:, :2, 0]), ("warping.code_in.weight", lambda t: t[:, 2:, 0])])
    same("foldnet.conv1_1.bias", "warping.coord_in.bias")
    out["foldnet.conv1_2.weight"] = ((h, h, 1), [("warping.hidden.weight", lambda t: t[..., 0])])
    same("foldnet.conv1_2.bias", "warping.hidden.bias")
    out["foldnet.conv1_3.weight"] = ((2, h, 1), [("warping.out.weight", lambda t: t[..., 0])])
    same("foldnet.conv1_3.bias", "warping.out.bias")
    return out


def key_problems(expected: dict, state: dict) -> list[str]:
    """Unknown, missing and mis-shaped keys of `state` against {key: shape} (and constants that
    differ), as short phrases with a few names and the counts; empty: a match."""
    unknown = sorted(set(state) - set(expected))
    missing = [k for k in expected if k not in state]
    wrong = [f"{k} {tuple(v.shape)} (expected {expected[k]})" for k, v in state.items() if k in expected and tuple(v.shape) != expected[k]]
    return [f"{what}: {_shorten(keys)}" for what, keys in (("unknown keys", unknown), ("missing keys", missing), ("wrong shapes", wrong)) if keys]


def load_generator_state(generator: CoordGANGenerator, state: dict, name: str = "g_ema") -> None:
    """Copy the authors' generator state_dict into ours through the key map; unknown, missing or
    mis-shaped keys, and constant kernels that differ from the constructor's, are a ValueError."""
    key_map = generator_key_map(generator)
    problems = key_problems({k: shape for k, (shape, _) in key_map.items()}, state)
    changed = [k for k, (_, targets) in key_map.items() if targets[0][0] == "constant" and k in state
               and state[k].shape == targets[0][1].shape and not torch.allclose(state[k].float(), targets[0][1])]
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
    left = sorted(set(generator.state_dict()) - covered - {"canonical_coords", "structure_code_mean", "texture_code_mean"})
    if left:  # the map must cover every weight of ours; a gap is a bug here, not a bad file
        raise RuntimeError(f"the key map leaves {_shorten(left)} unset")


def load_encoder_state(encoder: CoordGANOfficialEncoder, state: dict, name: str = "e") -> None:
    ours = encoder.state_dict()
    problems = key_problems({k: tuple(v.shape) for k, v in ours.items()}, state)
    changed = [k for k in ours if k.endswith("Blur.kernel") and k in state and state[k].shape == ours[k].shape and not torch.allclose(state[k].float(), ours[k])]
    if changed:
        problems.append(f"constant blur kernels that differ from the authors' [1, 2, 1] / [1] filters: {_shorten(changed)}")
    if problems:
        raise ValueError(f"'{name}' does not match the authors' encoder: " + "; ".join(problems))
    encoder.load_state_dict({k: v.to(ours[k].dtype) for k, v in state.items()})


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
            file also gives the encoder `e`).
        encoder: a separate train-encoder.py file whose `e` is the encoder (optional).
        config: one of OFFICIAL_CONFIGS (default: read from the file).
        code_means: also compute the mean structure/texture codes that truncation pulls towards.

    Returns:
        dict(generator=..., encoder=... or None), in eval mode. A file that is not such a checkpoint
        is a ValueError of one or two lines: the problem, then what to pass instead.
    """
    name = release_name(path)
    if name is not None:  # official:NAME -> the downloaded files and the release's config
        files = download_release(name)
        path, encoder, config = files["generator"], encoder or files["encoder"], config or RELEASES[name]["config"]
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
        raise ValueError(f"{str(where)!r}: {error}\nThis is not the layout of the authors' CoordGAN checkpoints; {WHAT_TO_PASS}.") from None
    if code_means:
        generator.update_code_means(CODE_MEAN_SAMPLES, torch.Generator().manual_seed(CODE_MEAN_SEED))
    return dict(generator=generator.eval(), encoder=official_encoder.eval() if official_encoder is not None else None)


def load_official_checkpoint(path, **options) -> CoordGANPipeline:
    """A CoordGANPipeline from an authors' checkpoint (options as in `official_components`)."""
    return CoordGANPipeline(**official_components(path, **options))


def save_atomic(pipe: CoordGANPipeline, output) -> None:
    """save_pretrained into a temporary sibling, then rename: a reader never sees half a folder."""
    output = Path(output)
    tmp = output.with_name(output.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="the authors' train.py or train-encoder.py .pt file, or official:NAME (see --list)")
    p.add_argument("--encoder", default=None, help="a train-encoder.py .pt whose 'e' is the encoder (when CHECKPOINT has none)")
    p.add_argument("--output", default=None, help="folder for CoordGANPipeline.save_pretrained")
    p.add_argument("--list", action="store_true", help="list the named releases and exit")
    p.add_argument("--config", default=None, choices=OFFICIAL_CONFIGS, help="the authors' config (default: read from the file)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """The command line: 0 when the folder is written; 2, with the problem on stderr, when the file
    is not an authors' CoordGAN checkpoint or the folder cannot be written."""
    args = parse_args(argv)
    if args.list:
        print(f"Named releases (official:NAME; files in {RELEASE_REPO}, a Hugging Face dataset, folder {RELEASE_FOLDER}/; names unverified):")
        for name, r in RELEASES.items():
            print(f"  official:{name:<12} {r['config']:<16} generator {r['generator']}, encoder {r['encoder'] or '(none released)'}")
        return 0
    if not args.checkpoint or not args.output:
        print("error: give CHECKPOINT (a .pt file or official:NAME) and --output DIR, or --list", file=sys.stderr)
        return 2
    try:
        pipe = load_official_checkpoint(args.checkpoint, encoder=args.encoder, config=args.config)
        save_atomic(pipe, args.output)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    g = pipe.generator
    encoder = "with the encoder" if pipe.encoder is not None else "no encoder (label propagation on real images needs --encoder)"
    print(f"wrote {args.output}: {g.resolution} px generator, {encoder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
