"""Import the authors' released GANgealing checkpoints (wpeebles/gangealing, .pt pickles).

    python -m gangealing.convert_official cat.pt --output checkpoints/gangealing-cat
    python -m gangealing.convert_official car.pt --output checkpoints/gangealing-car --category car

The file is read with `torch.load(weights_only=True)`, allowing only `argparse.Namespace`
(the pickled training arguments): no arbitrary code runs. Our networks keep the official
state_dict key names, so every tensor maps by name; shapes are checked, and an unknown or
missing key is a ValueError that names it (the authors' loader silently drops keys; we only
skip the constant buffers it skips: input-downsample kernels, `one_hot`, the obsolete `rebias`).
The authors' test-time settings (padding mode, similarity iterations, number of clusters,
target inject index) come from their table of pretrained hyperparameters, keyed by category
(given, or taken from the file name), and are stored in our configs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

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


def read_checkpoint(path) -> dict:
    """torch.load with weights_only=True, allowing argparse.Namespace only."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict of state_dicts (g_ema, t_ema, ll, ...), got {type(ckpt).__name__}")
    unknown = sorted(set(ckpt) - MODEL_KEYS - TRAINING_STATE_KEYS)
    missing = sorted({"g_ema", "t_ema", "ll"} - set(ckpt))
    if unknown or missing:
        raise ValueError(f"{path}: not a GANgealing checkpoint: missing top-level keys {missing}, unknown top-level keys {unknown}")
    return ckpt


def load_into(model: torch.nn.Module, state: dict, name: str) -> None:
    """Copy `state` into `model` name for name; unknown/missing keys and shape mismatches are errors."""
    ours = model.state_dict()
    theirs = {k: v for k, v in state.items() if not _SKIPPED.search(k)}
    unknown = sorted(set(theirs) - set(ours))
    missing = sorted(k for k in set(ours) - set(theirs) if not _SKIPPED.search(k))
    if unknown or missing:
        raise ValueError(f"'{name}': unknown keys {unknown[:20]}{' ...' if len(unknown) > 20 else ''} (of {len(unknown)}), "
                         f"missing keys {missing[:20]}{' ...' if len(missing) > 20 else ''} (of {len(missing)}); "
                         "this is not the checkpoint layout this importer knows")
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(ours[k].shape)}" for k, v in theirs.items() if tuple(v.shape) != tuple(ours[k].shape)]
    if wrong:
        raise ValueError(f"'{name}': shape mismatch for {len(wrong)} tensors: " + "; ".join(wrong[:10]))
    with torch.no_grad():
        for k, v in theirs.items():
            ours[k].copy_(v.to(ours[k].dtype))


def _generator_config(sd: dict) -> dict:
    try:
        num_layers = len([k for k in sd if k.startswith("noises.noise_")])
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim = sd["style.1.weight"].shape[0]
        resolution = 2 ** ((num_layers - 1) // 2 + 2)
        last = sd[f"to_rgbs.{(num_layers - 1) // 2 - 1}.conv.weight"].shape[2]
    except (KeyError, IndexError) as error:
        raise ValueError(f"'g_ema': cannot read the generator layout (missing {error})") from None
    cm = last / stylegan_channels(resolution, 1.0) if resolution > 32 else 2.0
    return dict(resolution=resolution, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm)


def _stn_config(sd: dict) -> dict:
    try:
        num_heads = sd["stns.0.warp_head.linear.weight"].shape[0] // 4
        blocks = len({k.split(".")[3] for k in sd if k.startswith("stns.0.convs.")}) - 1
        stem = sd["stns.0.convs.0.0.weight"].shape[0]
    except KeyError as error:
        raise ValueError(f"'t_ema': cannot read the transformer layout (missing {error})") from None
    flow_size = 4 * 2**blocks
    has_down = any(k.startswith("stns.0.input_downsample") for k in sd) or flow_size == 128
    cm = stem / stylegan_channels(flow_size, 1.0) if flow_size > 32 else 0.5
    return dict(flow_size=flow_size, input_size=2 * flow_size if has_down else flow_size, channel_multiplier=cm, num_heads=num_heads)


def official_components(path, category: str | None = None, **overrides) -> dict:
    """The networks of a released .pt as GANgealingPipeline components (generator, transformer,
    target, classifier), in eval mode. `category` picks the authors' test-time settings (default:
    the file name's stem when it is a known category); `overrides` set padding_mode,
    similarity_iters or inject_index explicitly."""
    ckpt = read_checkpoint(path)
    stem = Path(str(path)).stem.lower()
    category = category or (stem if stem in PRETRAINED_TEST_SETTINGS else None)
    if category is not None and category not in PRETRAINED_TEST_SETTINGS:
        raise ValueError(f"unknown category {category!r}; choose one of {sorted(PRETRAINED_TEST_SETTINGS)} or pass the settings explicitly")
    settings = {**DEFAULT_TEST_SETTINGS, **PRETRAINED_TEST_SETTINGS.get(category, {})}
    args = ckpt.get("args")
    if getattr(args, "inject", None) is not None and "inject_index" not in PRETRAINED_TEST_SETTINGS.get(category, {}):
        settings["inject_index"] = int(args.inject)
    settings.update(overrides)

    generator = StyleGAN2Generator(**_generator_config(ckpt["g_ema"]))
    load_into(generator, ckpt["g_ema"], "g_ema")
    stn = _stn_config(ckpt["t_ema"])
    k = stn["num_heads"]
    if k > 1 and "classifier" not in ckpt:
        raise ValueError(f"{path}: the transformer has {k} cluster heads but the checkpoint has no 'classifier'")
    transformer = SpatialTransformer(**stn, padding_mode=settings["padding_mode"], similarity_iters=settings["similarity_iters"],
                                     flip="tv" if k == 1 else "classifier")
    load_into(transformer, ckpt["t_ema"], "t_ema")
    ll = ckpt["ll"]
    if "coefficients" not in ll or "directions" not in ll:
        raise ValueError(f"'ll': missing keys {sorted({'coefficients', 'directions', 'lat_mean'} - set(ll))}")
    target = LearnedTarget(num_directions=ll["directions"].shape[0], num_heads=ll["coefficients"].shape[0],
                           inject_index=settings["inject_index"], num_latents=generator.num_latents, style_dim=generator.style_dim)
    load_into(target, ll, "ll")
    classifier = None
    if "classifier" in ckpt:
        classifier = ClusterClassifier(flow_size=stn["flow_size"], input_size=stn["input_size"], channel_multiplier=stn["channel_multiplier"],
                                       num_clusters=ckpt["classifier"]["to_logits.weight"].shape[0] // 2)
        load_into(classifier, ckpt["classifier"], "classifier")
        classifier.eval()
    return dict(generator=generator.eval(), transformer=transformer.eval(), target=target.eval(), classifier=classifier)


def load_official_checkpoint(path, **options) -> GANgealingPipeline:
    """A GANgealingPipeline from a released .pt (options as in `official_components`)."""
    return GANgealingPipeline(**official_components(path, **options))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a released GANgealing .pt file (keys g_ema, t_ema, ll, [classifier], args)")
    p.add_argument("--output", required=True, help="folder for GANgealingPipeline.save_pretrained")
    p.add_argument("--category", default=None, choices=sorted(PRETRAINED_TEST_SETTINGS), help="the authors' test-time settings (default: from the file name)")
    p.add_argument("--padding-mode", default=None, choices=["border", "reflection", "zeros"], help="override the padding mode")
    p.add_argument("--similarity-iters", type=int, default=None, help="override the similarity STN iterations")
    p.add_argument("--inject-index", type=int, default=None, help="override the target's mixing cutoff")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in dict(padding_mode=args.padding_mode, similarity_iters=args.similarity_iters, inject_index=args.inject_index).items() if v is not None}
    pipe = load_official_checkpoint(args.checkpoint, category=args.category, **overrides)
    pipe.save_pretrained(args.output)
    t = pipe.transformer.config
    print(f"wrote {args.output}: {pipe.generator.resolution} px generator, K={t.num_heads}, padding {t.padding_mode}, iters {t.similarity_iters}")


if __name__ == "__main__":
    main()
