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
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .model import CONFIGS, CoCosNetCorrespondence, CoCosNetGenerator, network_configs
from .pipeline import CoCosNetPipeline

OFFICIAL_CONFIGS = ("ade20k", "celebahq", "celebahqedge", "deepfashion")
CELEBAHQ_GLASSES_CHANNEL = 16


def load_official_state_dict(path: str | os.PathLike) -> dict:
    """A plain state_dict from an official .pth file, loaded safely (weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"checkpoint file {str(path)!r} does not exist") from None
    except Exception as error:
        raise ValueError(f"{str(path)!r} is not a loadable PyTorch checkpoint with plain tensors ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state_dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _shorten(keys: list, limit: int = 12) -> str:
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
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _raise_if_problems(problems_by_file: dict) -> None:
    parts = [f"{name}: " + "; ".join(problems) for name, problems in problems_by_file.items() if problems]
    if parts:
        raise ValueError("the checkpoint does not match this config's network. " + " | ".join(parts)
                         + ". Check --config (ade20k, celebahq, celebahqedge or deepfashion) and that the files are "
                         "the matching latest_net_G.pth / latest_net_Corr.pth.")


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
    correspondence.to_empty(device="cpu")
    generator.to_empty(device="cpu")
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


def official_files(path: str | os.PathLike, correspondence: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(latest_net_G.pth, latest_net_Corr.pth) for `path`: the authors' checkpoint folder holding
    both, or the generator file (its `_Corr` sibling unless `correspondence` names the other file)."""
    path = Path(path)
    if path.is_dir():
        generator = path / GENERATOR_FILE
        sibling = path / CORRESPONDENCE_FILE
    else:
        stem = path.stem
        if stem.endswith("_Corr") and correspondence is None:  # the pair named by its other half
            path, correspondence = path.with_name(stem[:-5] + "_G" + path.suffix), path
        generator = path
        sibling = path.with_name(path.stem[:-2] + "_Corr" + path.suffix) if path.stem.endswith("_G") else None
    corr = Path(correspondence) if correspondence is not None else sibling
    if corr is None:
        raise ValueError(f"{str(path)!r} is not named like the authors' latest_net_G.pth: pass correspondence=PATH "
                         "(--correspondence) for its latest_net_Corr.pth, or the folder holding both files")
    return generator, corr


def detect_config(correspondence_state: dict) -> str:
    """The released config whose input channels match the correspondence network's first layer."""
    weight = correspondence_state.get(_FIRST_LAYER)
    channels = weight.shape[1] if isinstance(weight, torch.Tensor) and weight.dim() == 4 else None
    if channels not in CONFIG_BY_INPUT_CHANNELS:
        raise ValueError(f"cannot tell which release this is ({_FIRST_LAYER} has {channels} input channels); "
                         f"pass config= (--config) as one of {', '.join(OFFICIAL_CONFIGS)}")
    return CONFIG_BY_INPUT_CHANNELS[channels]


def official_components(path: str | os.PathLike, config: str | None = None, correspondence: str | os.PathLike | None = None) -> dict:
    """CoCosNetPipeline components (correspondence_network, generator) holding a released pair of files.

    `path`: the authors' checkpoint folder (latest_net_G.pth + latest_net_Corr.pth) or the generator
    file; `correspondence`: the other file when it is not the generator's `_Corr` sibling; `config`:
    ade20k, celebahq, celebahqedge or deepfashion (default: recognised from the input channels).
    """
    generator_file, correspondence_file = official_files(path, correspondence)
    generator_state = load_official_state_dict(generator_file)
    correspondence_state = load_official_state_dict(correspondence_file)
    corr, gen = convert(config or detect_config(correspondence_state), generator_state, correspondence_state)
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
    args = parse_args(argv)
    try:
        pipe = load_official_checkpoint(args.checkpoint, config=args.config, correspondence=args.correspondence)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tmp = args.output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    shutil.rmtree(args.output, ignore_errors=True)
    os.replace(tmp, args.output)
    config = pipe.correspondence_network.config
    print(f"wrote {args.output} ({config.input_kind} input, {config.input_channels} channels); "
          f"load it with CoCosNetPipeline.from_pretrained({args.output!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
