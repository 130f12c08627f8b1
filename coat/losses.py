"""COAT objectives (section 3.2): L = L_rec + alpha L_reg + beta L_CCL (eq. 7), one function per term."""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F

from .correspondence import hard_negatives, random_negatives

_TORCHVISION_WEIGHTS = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                        "squeeze": "squeezenet1_1-b8a52dc0.pth"}


# Copied from coordgan.losses.lpips_quietly
def lpips_quietly(**kwargs):
    """`lpips.LPIPS(**kwargs)` without the two torchvision deprecation warnings its own
    `pretrained=` call raises on every construction (lpips' code, nothing a user can act on)."""
    import lpips

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The parameter 'pretrained' is deprecated", UserWarning)
        warnings.filterwarnings("ignore", "Arguments other than a weight enum", UserWarning)
        return lpips.LPIPS(**kwargs)


def perceptual_network(net: str = "alex"):
    """LPIPS (Zhang et al., 2018) with its ImageNet trunk, frozen.

    The trunk's ImageNet weights come through torchvision (downloaded once into the torch cache
    when the machine is online). With no cached weights and no network, or with HF_HUB_OFFLINE=1
    and nothing cached, it falls back to a randomly initialised trunk (seed 0, the learned LPIPS
    heads still loaded), once, with a warning: a random-feature distance still compares local
    structure, but it is not the calibrated LPIPS, so the perceptual half of L_rec is weaker and
    LPIPS numbers are not comparable to published ones.
    """
    cached = os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", _TORCHVISION_WEIGHTS.get(net, "")))
    model, reason = None, ""
    if cached or os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            model = lpips_quietly(net=net, verbose=False)
        except Exception as error:  # no network: fall through to the random trunk
            reason = f"{type(error).__name__}: {error}"
    else:
        reason = "HF_HUB_OFFLINE=1 and no cached torchvision weights"
    if model is None:
        warnings.warn(
            f"LPIPS-{net}: ImageNet weights unavailable ({reason}); using a random trunk. The perceptual loss "
            "is weaker and LPIPS values are not comparable to published ones. Run once with network access "
            "(or put the torchvision weights in the torch hub cache) for the real LPIPS.",
            stacklevel=2,
        )
        with torch.random.fork_rng(devices=[]):  # the same random trunk in every run
            torch.manual_seed(0)
            model = lpips_quietly(net=net, pnet_rand=True, verbose=False)
    model.eval().requires_grad_(False)
    return model


def lpips_distance(perceptual, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS between batches in [-1, 1] (computed in float32): (B,)."""
    return perceptual(a.float(), b.float(), normalize=False).flatten(1).mean(1)


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, perceptual=None, mse_weight: float = 1.0,
                        lpips_weight: float = 0.8) -> torch.Tensor:
    """L_rec: MSE + LPIPS (section 3.2; weights 1.0 / 0.8 from pSp/e4e, PROPOSAL)."""
    loss = mse_weight * F.mse_loss(output.float(), target.float())
    if perceptual is not None and lpips_weight:
        loss = loss + lpips_weight * lpips_distance(perceptual, output, target).mean()
    return loss


def latent_regularizer(styles: list) -> torch.Tensor:
    """L_reg, e4e's delta regulariser as PROPOSAL: ||w_k - mean_k w_k||_2 per image, averaged over
    layers and images, so the per-layer vectors stay close to one latent (W rather than W+)."""
    w = torch.stack([s[0].float() for s in styles], 1)  # (B, K, style_dim)
    return (w - w.mean(1, keepdim=True)).norm(dim=2).mean()


def correspondence_contrastive_loss(output_features: list, content_features: list, style_features: list,
                                   matches: list, num_negatives: int = 64, temperature: float = 0.07,
                                   negatives: str = "hard", radius: int = 1, max_pairs: int | None = 256,
                                   generator: torch.Generator | None = None) -> torch.Tensor:
    """L_CCL, eq. (5)-(6), summed over the given scales and averaged over the pairs of p.

    output_features: per scale (B, D, h, w), matching features of E(I_{2->1}); content_features /
    style_features: the same of I1 / I2 (the negatives are ranked on S^l, eq. 5); matches: per
    scale the confident set p^l (ScaleMatches). For each (i, j) in p the positive is the content
    feature at i, the negatives are content positions k (hard: the `num_negatives` largest S_{k,j}
    outside the (2 radius + 1)^2 window around i; random: uniform outside it, the CUT ablation),
    C_{i,k} = exp(cos(F^{2->1}_i, F^1_k) / tau). `max_pairs` caps the pairs per image and scale
    (a random subset) to bound the cost. Pass one scale for the single-scale ablation.
    """
    if negatives not in ("hard", "random"):
        raise ValueError(f"negatives must be 'hard' or 'random', got {negatives!r}")
    total, count = output_features[0].new_zeros(()).float(), 0
    for out, con, sty, m in zip(output_features, content_features, style_features, matches):
        q = F.normalize(out.flatten(2).float(), dim=1)  # (B, D, HW)
        keys = F.normalize(con.flatten(2).float(), dim=1)
        for b in range(out.shape[0]):
            i, j = m.pairs(b)
            if max_pairs is not None and len(i) > max_pairs:
                keep = torch.randperm(len(i), generator=generator)[:max_pairs].to(i.device)
                i, j = i[keep], j[keep]
            if len(i) == 0:
                continue
            if negatives == "hard":
                neg = hard_negatives(con[b].detach(), sty[b].detach(), i, j, num_negatives, radius)
            else:
                neg = random_negatives(m.size, i, num_negatives, radius, generator)
            query = q[b][:, i].T  # (N, D)
            positive = (query * keys[b][:, i].T).sum(1, keepdim=True)  # (N, 1)
            negative = torch.einsum("nd,dnk->nk", query, keys[b][:, neg])  # (N, K)
            logits = torch.cat([positive, negative], 1) / temperature
            total = total + F.cross_entropy(logits, torch.zeros(len(i), dtype=torch.long, device=logits.device),
                                            reduction="sum")
            count += len(i)
    return total / max(count, 1)


def match_supervision_loss(content_features: list, style_features: list, target_index: list, valid: list,
                           temperature: float = 0.07) -> torch.Tensor:
    """PROPOSAL, not in the paper: InfoNCE of each content position i against all style positions,
    the positive being the known corresponding position (the warp of a pseudo pair, or the
    renderer's canonical coordinates). target_index / valid: per scale (B, HW) long / bool.
    Computed in row blocks through `cross_entropy` on (rows, HW) logits."""
    total, count = content_features[0].new_zeros(()).float(), 0
    for con, sty, idx, ok in zip(content_features, style_features, target_index, valid):
        a = F.normalize(con.flatten(2).float(), dim=1).transpose(1, 2)  # (B, HW1, D)
        b = F.normalize(sty.flatten(2).float(), dim=1)  # (B, D, HW2)
        for start in range(0, a.shape[1], 1024):
            logits = a[:, start:start + 1024] @ b / temperature  # (B, rows, HW2)
            t = idx[:, start:start + 1024]
            m = ok[:, start:start + 1024]
            if m.any():
                total = total + F.cross_entropy(logits[m], t[m], reduction="sum")
                count += int(m.sum())
    return total / max(count, 1)



# ------------------------------------------------------------------ colour terms (not in the paper)


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """Differentiable sRGB -> CIELAB (D65): (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) L*, a*, b*
    (the same formulas as coat.evaluate.rgb_to_lab, in float32)."""
    x = ((images.float() + 1) / 2).clamp(0, 1)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    matrix = linear.new_tensor([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                                [0.0193339, 0.1191920, 0.9503041]])
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / linear.new_tensor([0.95047, 1.0, 1.08883])[:, None, None]
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def part_colour_loss(output: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Not in the paper (an extra term of eq. 7, next to L_rec): the area-weighted Delta E 1976
    between the mean CIELAB colours of output and target over each object part (labels > 0) of
    an exact part map, divided by 100 (so a 1-unit Delta E costs 0.01). The same quantity as the
    evaluation's part-colour error, on training pairs. output / target (B, 3, H, W) in [-1, 1],
    labels (B, H, W) int part ids (0 = background, left out)."""
    lab_o, lab_t = rgb_to_lab(output), rgb_to_lab(target)
    parts = int(labels.max()) + 1
    onehot = F.one_hot(labels.long(), parts).permute(0, 3, 1, 2)[:, 1:].float()  # (B, K, H, W), objects only
    area = onehot.sum((2, 3))  # (B, K)
    mean_o = torch.einsum("bkhw,bchw->bkc", onehot, lab_o) / area.clamp_min(1)[..., None]
    mean_t = torch.einsum("bkhw,bchw->bkc", onehot, lab_t) / area.clamp_min(1)[..., None]
    delta = ((mean_o - mean_t).pow(2).sum(-1) + 1e-6).sqrt()  # (B, K); eps: a finite gradient at 0
    return (delta * area).sum() / area.sum().clamp_min(1) / 100


def lowpass_colour_loss(output: torch.Tensor, target: torch.Tensor, cells: int = 8) -> torch.Tensor:
    """Not in the paper (an extra term of eq. 7, for data without part maps): MSE between output and
    target average-pooled to cells x cells, i.e. L_rec's MSE on the low frequencies only."""
    return F.mse_loss(F.adaptive_avg_pool2d(output.float(), cells), F.adaptive_avg_pool2d(target.float(), cells))
