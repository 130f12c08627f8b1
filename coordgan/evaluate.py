"""Evaluate a CoordGAN pipeline as in the paper: label propagation (Table 1) and texture-swap
consistency (Table 2).

    python -m coordgan.evaluate --checkpoint checkpoints/coordgan-faces --data synthetic:faces
    python -m coordgan.evaluate --checkpoint DIR --data folder:PATH   (PATH/images + PATH/labels)

Label propagation: `--references` reference images (default 5), each propagated to every query;
mIoU over the part classes (background excluded), counted where the ground truth is not
background; intersections and unions summed over the queries, averaged over classes, then over
references. Baselines on the same pairs: copying the reference labels unchanged, and nearest
neighbour on RGB. On synthetic data the exact correspondence (canonical coordinates) also gives
the ceiling that eq. (1) reaches at this resolution.

Two propagation rules (`--rule`; the CoordGAN row names the one used): ours, eq. (1) on the
correspondence maps upsampled to the image size (nearest coordinate, or `--temperature` for the
relaxed rule with a squared-distance kernel); authors, their evaluation (eval_corr.py): one-hot
labels resized bilinearly to the maps' size, softmax(-||d|| / 0.01) over the plain L2 distance,
argmax, then a nearest resize to the label size.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .correspondence import (AUTHORS_RULE, AUTHORS_TEMPERATURE, OUR_RULE, RULE_DESCRIPTIONS, RULES, propagate,
                             propagate_labels)


def rule_name(rule: str, temperature=None) -> str:
    """The CoordGAN row's name: which propagation rule it used."""
    if rule == OUR_RULE and temperature is not None:
        return f"coordgan (our rule: relaxed eq. (1), squared-distance kernel, t={temperature:g})"
    if rule == AUTHORS_RULE and temperature not in (None, AUTHORS_TEMPERATURE):
        return f"coordgan (the authors' rule: softmax(-L2 distance / {temperature:g}) at the map size)"
    return f"coordgan ({RULE_DESCRIPTIONS[rule]})"


def propagated_labels(maps: torch.Tensor, labels: np.ndarray, reference: int, queries, num_classes: int,
                      rule: str = OUR_RULE, temperature=None) -> list:
    """The CoordGAN prediction for each query: `correspondence.propagate` from image `reference`
    (the pipeline's `propagate_labels` makes the same call), on the encoded maps (n, 2, h, w), with
    our rule at the labels' resolution. -> one int64 array per query, at its labels' size."""
    ref_labels = torch.from_numpy(labels[reference])[None]
    r = labels.shape[1]
    predictions = []
    for q in queries:
        pred = propagate(ref_labels, maps[reference : reference + 1], maps[q : q + 1], rule, labels[q].shape,
                         temperature, r, num_classes)
        predictions.append(pred[0].cpu().numpy())
    return predictions


def miou(predictions: list, truths: list, num_classes: int) -> float:
    """Mean IoU over classes 1..C-1 present in truth or prediction, pixels with truth > 0 only,
    intersections and unions summed over all (prediction, truth) pairs."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for p, t in zip(predictions, truths):
        keep = t > 0
        p, t = p[keep], t[keep]
        inter += np.bincount(t[p == t], minlength=num_classes)[:num_classes]
        union += np.bincount(p,
                             minlength=num_classes)[:num_classes] + np.bincount(t, minlength=num_classes)[:num_classes]
    union -= inter
    classes = np.arange(1, num_classes)
    classes = classes[union[classes] > 0]
    return float((inter[classes] / union[classes]).mean() * 100) if len(classes) else float("nan")


def copy_baseline(reference_labels: np.ndarray, query_shape) -> np.ndarray:
    t = torch.from_numpy(reference_labels)[None, None].float()
    return F.interpolate(t, size=tuple(query_shape), mode="nearest")[0, 0].long().numpy()


def rgb_nearest_baseline(reference_image: np.ndarray, reference_labels: np.ndarray, query_image: np.ndarray,
                         chunk: int = 4096) -> np.ndarray:
    """Each query pixel takes the label of the reference pixel with the closest RGB colour."""
    ref = torch.from_numpy(reference_image.reshape(-1, 3).astype(np.float32))
    qry = torch.from_numpy(query_image.reshape(-1, 3).astype(np.float32))
    lab = torch.from_numpy(reference_labels.reshape(-1))
    out = torch.empty(len(qry), dtype=torch.int64)
    for i in range(0, len(qry), chunk):
        out[i : i + chunk] = lab[torch.cdist(qry[i : i + chunk], ref).argmin(1)]
    return out.reshape(query_image.shape[:2]).numpy()


def exact_correspondence(reference_coords, reference_labels, query_coords, num_classes) -> np.ndarray:
    """Eq. (1) with the renderer's true canonical coordinates (foreground only)."""
    ref_fg = ~np.isnan(reference_coords[..., 0])
    qry_fg = ~np.isnan(query_coords[..., 0])
    src = torch.from_numpy(np.nan_to_num(reference_coords, nan=10.0)).permute(2, 0, 1)[None]
    dst = torch.from_numpy(np.nan_to_num(query_coords, nan=-10.0)).permute(2, 0, 1)[None]
    labels = torch.from_numpy(np.where(ref_fg, reference_labels, 0))[None]
    pred = propagate_labels(labels, src, dst, num_classes)[0].numpy()
    return np.where(qry_fg, pred, 0)


def load_data(spec: str, n: int, resolution: int, seed: int, pose: str = "aligned"):
    """images uint8 [n, R, R, 3], labels int64 [n, R, R], coords or None, class names."""
    kind, _, value = spec.partition(":")
    if kind == "synthetic":
        import synthetic

        batch = synthetic.sample(value, n, resolution, seed=seed, pose=pose)
        return batch.image, batch.labels, batch.coords, synthetic.category(value).class_names
    if kind == "folder":
        from synthetic.folder import ImageFolderDataset, tensor_to_image

        ds = ImageFolderDataset(value, resolution, labels=True)
        items = [ds[i] for i in range(min(n, len(ds)))]
        images = np.stack([tensor_to_image(it["image"]) for it in items])
        labels = np.stack([it["labels"].numpy() for it in items])
        return images, labels, None, ds.class_names
    raise ValueError(f"--data must be 'synthetic:CATEGORY' or 'folder:PATH', got {spec!r}")


@torch.no_grad()
def label_propagation(pipe, images, labels, coords, num_classes: int, references: int = 5, temperature=None,
                      rule: str = OUR_RULE) -> dict:
    """mIoU per method; the CoordGAN row is named by `rule_name` (which rule it used)."""
    n = len(images)
    if n <= references:
        raise ValueError(f"need more than {references} images (references plus queries), got {n}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    encoded = pipe.encode([Image.fromarray(im) for im in images]).correspondence_maps.float()
    name = rule_name(rule, temperature)
    scores = {name: [], "copy labels": [], "rgb nearest neighbour": []}
    if coords is not None:
        scores["exact correspondence (ceiling)"] = []
    for ref in range(references):
        queries = [q for q in range(references, n)]
        truth = [labels[q] for q in queries]
        ours = propagated_labels(encoded, labels, ref, queries, num_classes, rule, temperature)
        scores[name].append(miou(ours, truth, num_classes))
        copied = [copy_baseline(labels[ref], labels[q].shape) for q in queries]
        scores["copy labels"].append(miou(copied, truth, num_classes))
        nearest = [rgb_nearest_baseline(images[ref], labels[ref], images[q]) for q in queries]
        scores["rgb nearest neighbour"].append(miou(nearest, truth, num_classes))
        if coords is not None:
            exact = [exact_correspondence(coords[ref], labels[ref], coords[q], num_classes) for q in queries]
            scores["exact correspondence (ceiling)"].append(miou(exact, truth, num_classes))
    return {k: float(np.mean(v)) for k, v in scores.items()}


@torch.no_grad()
def texture_swap_consistency(pipe, n: int = 64, seed: int = 0) -> dict:
    """Table 2: mean LPIPS between images with one structure code and two texture codes (lower:
    structure kept); for scale, also between images that differ in both codes."""
    from .losses import lpips_distance, perceptual_network

    perceptual = perceptual_network("alex")
    base = 1_000_000 + seed * 10 * n
    s = list(range(base, base + n))
    t1, t2, s2 = (list(range(base + k * n, base + (k + 1) * n)) for k in (1, 2, 3))
    g = pipe.generator
    z = lambda seeds: pipe._z(seeds)  # noqa: E731
    a = g(z(s), z(t1), randomize_noise=False).image
    b = g(z(s), z(t2), randomize_noise=False).image
    c = g(z(s2), z(t2), randomize_noise=False).image
    return {"same structure, other texture": lpips_distance(perceptual, a, b).item(),
            "other structure and texture": lpips_distance(perceptual, a, c).item()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="CoordGANPipeline folder or Hub repo id")
    p.add_argument("--data", default="synthetic:faces", help="'synthetic:CATEGORY' or 'folder:PATH' with labels/")
    p.add_argument("--n", type=int, default=105, help="images: the references plus the queries")
    p.add_argument("--references", type=int, default=5, help="reference images (the paper uses 5)")
    p.add_argument("--seed", type=int, default=987_654, help="synthetic seed (training never uses a plain int seed)")
    p.add_argument("--pose", default="aligned", help="pose range of synthetic data (as in training)")
    p.add_argument("--rule", default=OUR_RULE, choices=RULES,
                   help="label propagation: ours (eq. 1 at the image size) or the authors' (eval_corr.py)")
    p.add_argument("--temperature", type=float, default=None,
                   help="ours: relaxed eq. (1), default nearest neighbour; authors: default 0.01")
    p.add_argument("--swap-pairs", type=int, default=64, help="pairs for texture-swap consistency")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .pipeline import CoordGANPipeline

    pipe = CoordGANPipeline.from_pretrained(args.checkpoint)
    images, labels, coords, class_names = load_data(args.data, args.n, pipe.generator.resolution, args.seed, args.pose)
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    propagation = label_propagation(pipe, images, labels, coords, num_classes, args.references,
                                    args.temperature, args.rule)
    swap = texture_swap_consistency(pipe, args.swap_pairs)
    print(f"Label propagation, {args.data} ({args.pose} poses), {args.references} references x "
          f"{args.n - args.references} queries, "
          f"{num_classes - 1} part classes, {pipe.generator.resolution}px")
    print("| method | mIoU % |\n|---|---|")
    for k, v in propagation.items():
        print(f"| {k} | {v:.2f} |")
    print("\nTexture-swap consistency (LPIPS, lower keeps the structure)\n| pairs | LPIPS |\n|---|---|")
    for k, v in swap.items():
        print(f"| {k} | {v:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label_propagation_miou": propagation, "texture_swap_lpips": swap, "args": vars(args)},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
