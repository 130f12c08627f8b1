"""Import the authors' released CoCosNet v1 checkpoints (microsoft/CoCosNet) into our networks.

    python -m cocosnet.convert_official checkpoints/celebahq --output runs/cocosnet-celebahq
    python -m cocosnet.convert_official --config celebahq \
        --generator checkpoints/celebahq/latest_net_G.pth \
        --correspondence checkpoints/celebahq/latest_net_Corr.pth --output runs/cocosnet-celebahq

writes a `save_pretrained` folder that `CoCosNetPipeline.from_pretrained` loads. The release
(ade20k, celebahq, celebahqedge, deepfashion) is recognised from the files' input channels unless
--config names it. `CoCosNetPipeline.from_official_checkpoint(path, **options)` loads the pair
directly (this module builds on pipeline.py; the pipeline imports it only inside that method).

Key names: our `paper` configs use the authors' own state-dict names (`adaptive_model_seg.layer1.0.weight_orig`,
`head_0.norm_0.mlp_shared.1.weight`, ...), so the mapping is the identity and the work here is
checking: files are read with `torch.load(weights_only=True)`; every tensor must have a counterpart of the
same shape, and missing or unknown keys raise a ValueError that names them. Spectral norm: the files hold
`weight_orig`, `weight_u` and `weight_v` (torch's hook layout); our `SNConv2d` keeps the same three tensors
and, in eval mode, divides by sigma = u^T W v with the stored vectors, exactly what the authors' inference does.
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

from .model import CONFIGS, CoCosNetCorrespondence, CoCosNetGenerator, network_configs
from .pipeline import CoCosNetPipeline

OFFICIAL_CONFIGS = ("ade20k", "celebahq", "celebahqedge", "deepfashion")
CELEBAHQ_GLASSES_CHANNEL = 16


WHAT_TO_PASS = ("Pass the authors' CoCosNet checkpoint folder (latest_net_G.pth and latest_net_Corr.pth) or its latest_net_G.pth "
                "(--correspondence / correspondence= for a Corr file elsewhere); a converted folder loads with CoCosNetPipeline.from_pretrained.")


def _torch_load(path: Path):
    """torch.load(weights_only=True); every failure is a one-line ValueError naming the problem."""
    if not path.exists():
        raise ValueError(f"checkpoint file {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a checkpoint file")
    with path.open("rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{str(path)!r} is empty")
    try:
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


def load_official_state_dict(path: str | os.PathLike) -> dict:
    """A plain state_dict from an official .pth file, loaded safely (weights_only=True); a file that
    is not one is a one-line ValueError naming the problem."""
    path = Path(path)
    state = _torch_load(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict of tensors")
    nested = sorted(str(k) for k, v in state.items() if isinstance(v, dict))
    if nested:
        raise ValueError(f"{str(path)!r} is a dict of state_dicts ({_shorten(nested)}), another model's checkpoint "
                         "(GANgealing's releases look like this), not one CoCosNet network")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor) or v.is_meta]
    if bad:
        raise ValueError(f"{str(path)!r} does not hold a state_dict of tensors with data: {_shorten(bad)} are not")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _shorten(keys: list, limit: int = 4) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def key_problems(model: torch.nn.Module, state: dict) -> list[str]:
    """Missing, unknown and mis-shaped keys of `state` for `model`, as readable phrases (empty: a match)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_shorten(missing)}")
    if unknown:
        problems.append(f"unknown keys: {_shorten(unknown)}")
    if shapes:
        problems.append(f"wrong shapes: {_shorten(shapes)}")
    return problems


def load_into(model: torch.nn.Module, state: dict, name: str) -> None:
    """Strictly copy `state` into `model`; a ValueError names every missing, unknown or mis-shaped key."""
    _raise_if_problems({name: key_problems(model, state)})
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    if any(t.is_meta for t in expected.values()):  # a model built on the meta device takes the file's tensors as they are
        model.load_state_dict(state, strict=True, assign=True)
    else:
        model.load_state_dict(state, strict=True)


def _raise_if_problems(problems_by_file: dict) -> None:
    parts = [f"{name}: " + "; ".join(problems) for name, problems in problems_by_file.items() if problems]
    if parts:
        raise ValueError("the checkpoint does not match this config's network. " + " | ".join(parts)
                         + ".\nCheck --config (ade20k, celebahq, celebahqedge or deepfashion) and that the files are "
                         "the matching latest_net_G.pth / latest_net_Corr.pth of one release.")


def convert(config: str, generator_state: dict, correspondence_state: dict):
    """(CoCosNetCorrespondence, CoCosNetGenerator) in eval mode holding the official weights."""
    if config not in OFFICIAL_CONFIGS:
        raise ValueError(f"unknown official config {config!r}; choose one of {', '.join(OFFICIAL_CONFIGS)}")
    corr_kwargs, gen_kwargs, _ = network_configs(CONFIGS[config])
    with torch.device("meta"):  # no memory until the weights are assigned
        correspondence = CoCosNetCorrespondence(**corr_kwargs)
        generator = CoCosNetGenerator(**gen_kwargs)
    names = ("correspondence (latest_net_Corr.pth)", "generator (latest_net_G.pth)")
    _raise_if_problems({names[0]: key_problems(correspondence, correspondence_state),
                        names[1]: key_problems(generator, generator_state)})
    # the loaded tensors become the parameters (assign): no second copy of the weights, so the peak is
    # the two files' tensors, not those plus the networks (0.29 GB less for the 256 px releases)
    load_into(correspondence, correspondence_state, names[0])
    load_into(generator, generator_state, names[1])
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


def official_files(path: str | os.PathLike, correspondence: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """(latest_net_G.pth, latest_net_Corr.pth or None) for `path`: the authors' checkpoint folder
    holding both, or the generator file (its `_Corr` sibling unless `correspondence` names the
    other file; None when neither says where it is)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist")
    if path.is_dir():
        if (path / "model_index.json").is_file():
            raise ValueError(f"{str(path)!r} is already a converted (save_pretrained) folder: load it with "
                             "CoCosNetPipeline.from_pretrained, or pass it to the app's --cocosnet as it is")
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
        keys = sorted(correspondence_state)
        raise ValueError(f"{name} is not a CoCosNet correspondence network: it has no 4-d {_FIRST_LAYER} "
                         f"(its keys: {_shorten(keys) or 'none'})")
    channels = weight.shape[1]
    if channels not in CONFIG_BY_INPUT_CHANNELS:
        raise ValueError(f"cannot tell which release this is ({_FIRST_LAYER} has {channels} input channels; the releases have "
                         f"{', '.join(f'{n} {c}' for c, n in CONFIG_BY_INPUT_CHANNELS.items())}); "
                         f"pass config= (--config) as one of {', '.join(OFFICIAL_CONFIGS)}")
    return CONFIG_BY_INPUT_CHANNELS[channels]


def official_components(path: str | os.PathLike, config: str | None = None, correspondence: str | os.PathLike | None = None) -> dict:
    """CoCosNetPipeline components (correspondence_network, generator) holding a released pair of files.

    `path`: the authors' checkpoint folder (latest_net_G.pth + latest_net_Corr.pth) or the generator
    file; `correspondence`: the other file when it is not the generator's `_Corr` sibling; `config`:
    ade20k, celebahq, celebahqedge or deepfashion (default: recognised from the input channels).
    Files that are not such a pair are a ValueError of one or two lines: the problem, then what to
    pass instead.
    """
    try:
        if config is not None and config not in OFFICIAL_CONFIGS:
            raise ValueError(f"unknown official config {config!r}; choose one of {', '.join(OFFICIAL_CONFIGS)}")
        generator_file, correspondence_file = official_files(path, correspondence)
        generator_state = load_official_state_dict(generator_file)  # what the file is, before looking for its pair
        if correspondence_file is None:
            raise ValueError(f"{str(generator_file)!r} is not named like the authors' latest_net_G.pth, so its latest_net_Corr.pth "
                             "cannot be found beside it: pass correspondence=PATH (--correspondence), or the folder holding both files")
        if correspondence is None and not correspondence_file.exists():
            raise ValueError(f"the correspondence network {str(correspondence_file)!r} (beside {generator_file.name}) does not exist: "
                             f"a CoCosNet release is a pair of files; put {CORRESPONDENCE_FILE} beside it or pass correspondence=PATH "
                             "(--correspondence)")
        correspondence_state = load_official_state_dict(correspondence_file)
        if _FIRST_LAYER in generator_state and "fc.weight" in correspondence_state:
            raise ValueError(f"the two files are swapped: {str(generator_file)!r} holds the correspondence network and "
                             f"{str(correspondence_file)!r} the generator")
        config = config or detect_config(correspondence_state, repr(str(correspondence_file)))
        corr, gen = convert(config, generator_state, correspondence_state)
    except ValueError as error:
        message = str(error)
        raise ValueError(message if "\n" in message else f"{message}\n{WHAT_TO_PASS}") from None
    return dict(correspondence_network=corr, generator=gen)


def load_official_checkpoint(path: str | os.PathLike, **options) -> CoCosNetPipeline:
    """A CoCosNetPipeline holding a released pair of files (options as in `official_components`)."""
    return CoCosNetPipeline(**official_components(path, **options))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="the authors' checkpoint folder (latest_net_G.pth + latest_net_Corr.pth) or latest_net_G.pth")
    p.add_argument("--generator", default=None, help="path to latest_net_G.pth (instead of the positional argument)")
    p.add_argument("--correspondence", default=None, help="path to latest_net_Corr.pth (default: beside the generator file)")
    p.add_argument("--config", default=None, choices=OFFICIAL_CONFIGS, help="which released model the files are (default: recognised from the files)")
    p.add_argument("--output", required=True, help="folder for the save_pretrained export")
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.generator is None):
        p.error("give the checkpoint folder (or latest_net_G.pth) either as the positional argument or as --generator, once")
    args.checkpoint = args.checkpoint or args.generator
    return args


def main(argv=None) -> int:
    """The command line: 0 when the folder is written; 2, with the problem on stderr, when the files
    are not a CoCosNet release or the folder cannot be written."""
    args = parse_args(argv)
    try:
        pipe = load_official_checkpoint(args.checkpoint, config=args.config, correspondence=args.correspondence)
        tmp = args.output.rstrip("/") + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pipe.save_pretrained(tmp)
        shutil.rmtree(args.output, ignore_errors=True)
        os.replace(tmp, args.output)  # a reader never sees half a folder
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = pipe.correspondence_network.config
    print(f"wrote {args.output} ({config.input_kind} input, {config.input_channels} channels); "
          f"load it with CoCosNetPipeline.from_pretrained({args.output!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
