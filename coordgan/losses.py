"""CoordGAN objectives (sections 3.4 and 3.5), one small function per term."""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F

from .correspondence import canonical_grid, chamfer_distance, soft_warp

_TORCHVISION_WEIGHTS = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                        "squeeze": "squeezenet1_1-b8a52dc0.pth"}


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
    on a machine with network access). With no cached weights and no network, or with
    HF_HUB_OFFLINE=1 and nothing cached, it falls back to a randomly initialised trunk (the
    learned LPIPS heads are still loaded), once, with a warning: a random-feature perceptual
    distance still compares local structure, but it is not the calibrated LPIPS, so texture-
    swap and warp losses are weaker and LPIPS numbers are not comparable to the paper's.
    """
    cached = os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", _TORCHVISION_WEIGHTS.get(net, "")))
    model = None
    if cached or os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            model = lpips_quietly(net=net, verbose=False)
        except Exception as error:  # no network: fall through to the random trunk
            reason = f"{type(error).__name__}: {error}"
    else:
        reason = "HF_HUB_OFFLINE=1 and no cached torchvision weights"
    if model is None:
        warnings.warn(
            f"LPIPS-{net}: ImageNet weights unavailable ({reason}); using a random trunk. Perceptual losses "
            "are weaker and LPIPS values are not comparable to published ones. Run once with network "
            "access (or put the torchvision weights in the torch hub cache) for the real LPIPS.",
            stacklevel=2,
        )
        with torch.random.fork_rng(devices=[]):  # the same random trunk in every run
            torch.manual_seed(0)
            model = lpips_quietly(net=net, pnet_rand=True, verbose=False)
    model.eval().requires_grad_(False)
    return model


def lpips_distance(perceptual, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean LPIPS between image batches in [-1, 1] (computed in float32)."""
    return perceptual(a.float(), b.float(), normalize=False).mean()


# ------------------------------------------------------------------ adversarial


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss for the generator: E[-log sigmoid(D(G(z)))]."""
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """E[-log sigmoid(D(x))] + E[-log(1 - sigmoid(D(G(z))))]."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor | tuple) -> torch.Tensor:
    """R1: E ||grad_x D(x)||^2 on real data (Mescheder et al., 2018), for lazy regularisation."""
    inputs = real_inputs if isinstance(real_inputs, tuple) else (real_inputs,)
    grads = torch.autograd.grad(real_logits.sum(), inputs, create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1).mean() for g in grads)


# ------------------------------------------------------------------ CoordGAN terms


def edge_distance(a: torch.Tensor, b: torch.Tensor, pool: int = 4) -> torch.Tensor:
    """A colour-blind layout distance: L1 between pooled, per-image normalised grey-level edge
    magnitudes. Not in the paper: an opt-in stand-in for LPIPS in the texture-swap term when only
    the random-trunk LPIPS exists (see bench/perceptual_fallback.py for why)."""

    def edges(x):
        g = x.float().mean(1, keepdim=True)
        gx, gy = g[..., :-1, 1:] - g[..., :-1, :-1], g[..., 1:, :-1] - g[..., :-1, :-1]
        m = (gx * gx + gy * gy + 1e-6).sqrt()
        return F.avg_pool2d(m / (m.mean((2, 3), keepdim=True) + 1e-6), pool)

    return (edges(a) - edges(b)).abs().mean()


def texture_swap_loss(perceptual, image_1: torch.Tensor, image_2: torch.Tensor,
                      distance: str = "lpips") -> torch.Tensor:
    """Eq. (4): L_t = LPIPS(G(z_s, z_t1), G(z_s, z_t2)): same structure, same picture layout.
    distance="edges" swaps LPIPS for `edge_distance` (a documented deviation)."""
    if distance == "edges":
        return edge_distance(image_1, image_2)
    return lpips_distance(perceptual, image_1, image_2)


def structure_swap_loss(patch_logits: torch.Tensor) -> torch.Tensor:
    """Eq. (5): L_s = E[-log D_patch(G(z_s1, z_t), G(z_s2, z_t))]: same texture, same look."""
    return F.softplus(-patch_logits).mean()


# Training maps are small (32x32 = 1,024 points in the tiny config): one tile is fastest there.
TRAINING_CHUNK = 4096


def warp_image(image: torch.Tensor, source_map: torch.Tensor, target_map: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """x^w_{2,1}: the colours of `image` (frame of source_map) moved to the frame of target_map
    by the relaxed eq. (1); images larger than the maps are pooled to the map size first."""
    size = source_map.shape[-2:]
    if image.shape[-2:] != size:
        image = F.adaptive_avg_pool2d(image, size)
    return soft_warp(image, source_map, target_map, temperature, chunk_size=TRAINING_CHUNK)


def warp_loss(perceptual, image_1, map_1, image_2, map_2, temperature: float) -> torch.Tensor:
    """Eq. (6): L_warp = LPIPS(x^w_{2,1}, x_2), x_1 warped into x_2's frame, at the map size."""
    warped = warp_image(image_1, map_1, map_2, temperature)
    target = F.adaptive_avg_pool2d(image_2, map_2.shape[-2:]) if image_2.shape[-2:] != map_2.shape[-2:] else image_2
    return lpips_distance(perceptual, warped, target)


def chamfer_loss(correspondence_map: torch.Tensor) -> torch.Tensor:
    """Eq. (7): Chamfer distance between the canonical grid and each warped coordinate map."""
    b, _, h, w = correspondence_map.shape
    grid = canonical_grid(h, w, device=correspondence_map.device, dtype=correspondence_map.dtype)
    return chamfer_distance(grid[None].expand(b, -1, -1, -1), correspondence_map, chunk_size=TRAINING_CHUNK).mean()


def ramp(step: int, length: int) -> float:
    """Linear warm-up from 0 to 1 over `length` steps (1 when length is 0)."""
    return 1.0 if length <= 0 else min(1.0, step / length)
