"""Evaluate a CoCosNet pipeline against exact answers on synthetic pairs.

    python -m cocosnet.evaluate --checkpoint checkpoints/cocosnet-faces --data synthetic:faces --json eval.json

For pairs (A, B) of the synthetic category the exact answer of mask(A) + exemplar(B) is
synthetic.render(structure of A, texture of B). Reported per method:
* PSNR (dB, whole image, 8-bit) and LPIPS (AlexNet; random-trunk fallback when its weights are missing)
  of the translation to that exact answer;
* warp PSNR: the warped exemplar r_{y->x} (eq. 4) against the exact answer;
* correspondence accuracy: for foreground cells u of A at the correspondence resolution, the
  exemplar cell argmax_v M(u, v) (eq. 3) is correct when its canonical coordinate lies within 0.1
  (in [-1, 1] units) of u's (percent), and the part label there equals u's (percent);
* the paper's style scores (section 4.1) with VGG-19 features: semantic consistency (cosine of
  relu3_2/4_2/5_2 to the exact answer) and style relevance (cosine of relu1_2 channel means: colour;
  of relu2_2 channel standard deviations: texture) to the exemplar.
Baselines on the same pairs: the exemplar copied unchanged (its correspondence: the identity) and
an image filled with the exemplar's mean colour (no correspondence).
Needs the `synthetic` package of this project (imported only here, at run time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .correspondence import best_match
from .losses import vgg_features
from .pipeline import CoCosNetPipeline, labels_to_input

COORD_THRESHOLD = 0.1
METHODS = ("cocosnet", "copy exemplar", "exemplar mean colour")


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 images [n, H, W, 3]."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


# Copied from coordgan.losses.lpips_quietly
def lpips_quietly(**kwargs):
    """`lpips.LPIPS(**kwargs)` without the two torchvision deprecation warnings its own
    `pretrained=` call raises on every construction (lpips' code, nothing a user can act on)."""
    import lpips

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The parameter 'pretrained' is deprecated", UserWarning)
        warnings.filterwarnings("ignore", "Arguments other than a weight enum", UserWarning)
        return lpips.LPIPS(**kwargs)


def lpips_network():
    """LPIPS-AlexNet; the trunk's ImageNet weights through torchvision when cached or reachable, else
    (once, with a warning) a seeded random trunk: distances are then not comparable to published ones."""
    cached = os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", "alexnet-owt-7be5be79.pth"))
    if cached or os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            return lpips_quietly(net="alex", verbose=False).eval(), True
        except Exception:
            pass
    warnings.warn("LPIPS: AlexNet ImageNet weights unavailable; using a seeded random trunk (LPIPS values are "
                  "not comparable to published ones).", stacklevel=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return lpips_quietly(net="alex", pnet_rand=True, verbose=False).eval(), False


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1


def correspondence_accuracy(match: np.ndarray, coords_a: np.ndarray, coords_b: np.ndarray, labels_a: np.ndarray,
                            labels_b: np.ndarray) -> tuple:
    """(% of foreground cells within COORD_THRESHOLD canonical units, % with the right part label).

    match (n, f*f) exemplar cell per input cell; coords (n, f, f, 2) canonical coordinates (NaN on
    background); labels (n, f, f) at the same cells."""
    n = len(match)
    ca, cb = coords_a.reshape(n, -1, 2), coords_b.reshape(n, -1, 2)
    la, lb = labels_a.reshape(n, -1), labels_b.reshape(n, -1)
    fg = la > 0
    cb_m = np.take_along_axis(cb, match[..., None], 1)
    lb_m = np.take_along_axis(lb, match, 1)
    dist = np.linalg.norm(ca - cb_m, axis=-1)
    close = np.where(np.isnan(dist), False, dist < COORD_THRESHOLD)
    return float(close[fg].mean() * 100), float((lb_m == la)[fg].mean() * 100)


def style_scores(vgg, output: torch.Tensor, exact: torch.Tensor, exemplar: torch.Tensor) -> dict:
    """Semantic consistency (to the exact answer) and style relevance colour / texture (to the exemplar)."""
    fo, fe, fx = vgg(output), vgg(exact), vgg(exemplar)
    semantic = np.mean([F.cosine_similarity(fo[k].flatten(1),
                                            fe[k].flatten(1)).mean().item() for k in ("relu3_2", "relu4_2", "relu5_2")])
    colour = F.cosine_similarity(fo["relu1_2"].mean((2, 3)), fx["relu1_2"].mean((2, 3))).mean().item()
    texture = F.cosine_similarity(fo["relu2_2"].std((2, 3)), fx["relu2_2"].std((2, 3))).mean().item()
    return {"semantic_consistency": float(semantic), "style_colour": float(colour), "style_texture": float(texture)}


def downsample_nearest(array: np.ndarray, size: int) -> np.ndarray:
    """[n, H, W, ...] -> [n, size, size, ...] sampled at the cell centres."""
    h = array.shape[1]
    index = ((np.arange(size) + 0.5) * h / size).astype(int)
    return array[:, index][:, :, index]


@torch.no_grad()
def evaluate(pipe: CoCosNetPipeline, category: str = "faces", pairs: int = 64, seed: int = 987_654,
             pose: str = "aligned",
             batch_size: int = 16) -> dict:
    """The table as a dict {method: {metric: value}} plus "meta"."""
    import synthetic

    r, f = pipe.resolution, pipe.correspondence_network.feature_resolution
    a = synthetic.sample(category, pairs, r, seed=seed, pose=pose)  # structures (and labels) of A
    b = synthetic.sample(category, pairs, r, seed=seed + 1, pose=pose)  # exemplars B
    exact = synthetic.render(category, a.structure, b.texture, r).image  # the exact answers
    kind = pipe.input_kind
    num_classes = pipe.num_classes or len(synthetic.category(category).class_names)
    if kind == "mask" and num_classes != len(synthetic.category(category).class_names):
        raise ValueError(f"the model knows {num_classes} classes but {category} has "
                         f"{len(synthetic.category(category).class_names)}")
    device, dtype = pipe.device, pipe.correspondence_network.dtype
    outputs, warped, matches = [], [], []
    for s in range(0, pairs, batch_size):
        x = labels_to_input(torch.from_numpy(a.labels[s : s + batch_size]), kind, num_classes).to(device, dtype)
        y = to_tensor(b.image[s : s + batch_size]).to(device, dtype)
        image, corr = pipe.run(x, y)
        outputs.append(image.float().cpu())
        warped.append(corr.warped_exemplar.float().cpu())
        matches.append(best_match(corr.query, corr.key).cpu())
    to_u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    ours, ours_warp = to_u8(torch.cat(outputs)), to_u8(torch.cat(warped))
    mean_colour = np.broadcast_to(b.image.reshape(pairs, -1, 3).mean(1).round().astype(np.uint8)[:, None, None],
                                  b.image.shape).copy()
    candidates = {"cocosnet": ours, "copy exemplar": b.image, "exemplar mean colour": mean_colour}

    coords_a, coords_b = downsample_nearest(a.coords, f), downsample_nearest(b.coords, f)
    labels_a, labels_b = downsample_nearest(a.labels, f), downsample_nearest(b.labels, f)
    identity = np.broadcast_to(np.arange(f * f), (pairs, f * f))
    corr_acc = {"cocosnet": correspondence_accuracy(torch.cat(matches).numpy(), coords_a, coords_b, labels_a, labels_b),
                "copy exemplar": correspondence_accuracy(identity, coords_a, coords_b, labels_a, labels_b)}
    lp, lp_pretrained = lpips_network()
    vgg = vgg_features()
    exact_t, exemplar_t = to_tensor(exact), to_tensor(b.image)
    table = {}
    for name, images in candidates.items():
        t = to_tensor(images)
        row = {"psnr": float(psnr(images, exact).mean()), "lpips": float(lp(t, exact_t).mean())}
        copied = row["psnr"] if name == "copy exemplar" else None
        row["warp_psnr"] = float(psnr(ours_warp, exact).mean()) if name == "cocosnet" else copied
        acc = corr_acc.get(name)
        row["corr_accuracy"], row["corr_label_accuracy"] = (acc if acc else (None, None))
        row.update(style_scores(vgg, t, exact_t, exemplar_t))
        table[name] = row
    table["meta"] = {"category": category, "pairs": pairs, "seed": seed, "pose": pose, "resolution": r,
                     "input_kind": kind, "lpips_pretrained": lp_pretrained, "vgg_pretrained": vgg.pretrained,
                     "coord_threshold": COORD_THRESHOLD}
    return table


@torch.no_grad()
def figure5_grid(pipe: CoCosNetPipeline, input_maps: torch.Tensor, map_images: np.ndarray,
                 exemplars: torch.Tensor) -> np.ndarray:
    """The layout of the paper's Figure 5: exemplars in the first row; below, one row per input map
    (its rendering first) with its translation in the style of each exemplar. uint8 [H, W, 3]."""
    n, m = len(input_maps), len(exemplars)
    image, _ = pipe.run(input_maps.repeat_interleave(m, 0), exemplars.repeat(n, 1, 1, 1))
    r = image.shape[-1]
    to_u8 = lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
    tiles = to_u8(image).reshape(n, m, r, r, 3)
    top = np.concatenate([np.full((1, r, r, 3), 255, np.uint8), to_u8(exemplars)], 0)  # (m + 1, r, r, 3)
    rows = np.concatenate([map_images[:, None], tiles], 1)  # (n, m + 1, r, r, 3)
    grid = np.concatenate([top[None], rows], 0)
    return grid.transpose(0, 2, 1, 3, 4).reshape((n + 1) * r, (m + 1) * r, 3)


def write_figure(pipe: CoCosNetPipeline, path: str, category: str = "faces", rows: int = 4, cols: int = 5,
                 seed: int = 4321) -> None:
    """Figure 5 on unseen synthetic pairs, saved as PNG."""
    import synthetic
    from PIL import Image

    r = pipe.resolution
    a = synthetic.sample(category, rows, r, seed=seed)
    b = synthetic.sample(category, cols, r, seed=seed + 1)
    maps = labels_to_input(torch.from_numpy(a.labels), pipe.input_kind, pipe.num_classes or 1).to(pipe.device)
    Image.fromarray(figure5_grid(pipe, maps, map_images(a.labels, pipe.input_kind),
                                 to_tensor(b.image).to(pipe.device))).save(path)


def map_images(labels: np.ndarray, kind: str) -> np.ndarray:
    """Renderings [n, H, W, 3] of label maps as the model sees them: class colours, or dark edges on white."""
    import synthetic

    if kind == "mask":
        return synthetic.colorize(labels)
    return np.repeat(np.where(synthetic.edge_map(labels), 0, 255).astype(np.uint8)[..., None], 3, -1)


def format_table(table: dict) -> str:
    cols = ["psnr", "lpips", "warp_psnr", "corr_accuracy", "corr_label_accuracy", "semantic_consistency",
            "style_colour", "style_texture"]
    heads = ["PSNR dB", "LPIPS", "warp PSNR", "corr acc %", "label acc %", "sem. cons.", "style col.", "style tex."]
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"  # noqa: E731
    lines = ["| method | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in METHODS:
        lines.append(f"| {name} | " + " | ".join(fmt(table[name][c]) for c in cols) + " |")
    m = table["meta"]
    lines.append(f"\n{m['pairs']} unseen {m['category']} pairs at {m['resolution']}px (seed {m['seed']}); LPIPS trunk "
                 f"{'ImageNet' if m['lpips_pretrained'] else 'random (fallback)'}, VGG-19 "
                 f"{'ImageNet' if m['vgg_pretrained'] else 'random (fallback)'}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a CoCosNetPipeline save_pretrained folder or Hub id")
    p.add_argument("--data", default="synthetic:faces", help="'synthetic:CATEGORY'")
    p.add_argument("--pairs", type=int, default=64, help="number of (A, B) pairs")
    p.add_argument("--seed", type=int, default=987_654, help="synthetic seed (training never uses a plain int seed)")
    p.add_argument("--pose", default="aligned", help="pose range of synthetic data (as in training)")
    p.add_argument("--json", default=None, help="also write the table here")
    p.add_argument("--figure", default=None, help="also write a Figure 5 style grid (PNG) of unseen pairs here")
    args = p.parse_args(argv)
    kind, _, category = args.data.partition(":")
    if kind != "synthetic" or not category:
        p.error("exact answers exist only for synthetic data: --data synthetic:CATEGORY")
    pipe = CoCosNetPipeline.from_pretrained(args.checkpoint)
    table = evaluate(pipe, category, args.pairs, args.seed, args.pose)
    print(format_table(table))
    if args.figure:
        write_figure(pipe, args.figure, category)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
