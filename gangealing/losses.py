"""The GANgealing objective (eq. 5, with the cluster assignment of eq. 6):

    L(T, c) = E_w [ min_k l(T_k(G(w)), G(mix(c_k, w))) + lambda_TV L_TV(T) + lambda_I L_I(T) ]

l is LPIPS (the authors' lambda_TV = 2500 goes with LPIPS-VGG), L_TV the Huber total variation
of the residual flow, L_I = ||flow||^2 keeps the flow near the identity.
"""

from __future__ import annotations

import os
import warnings

import torch

from .transformer import total_variation

_TRUNK_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
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


def perceptual_network(net: str = "vgg"):
    """Frozen LPIPS. Its ImageNet trunk comes through torchvision (downloaded once on a machine
    with network access). Without cached weights and without network (or with HF_HUB_OFFLINE=1
    and nothing cached) it warns once and uses a seeded random trunk with the learned LPIPS
    heads: it still compares local structure, so congealing trains, but the loss is not the
    calibrated LPIPS and alignment quality is expected to be lower than with real weights."""
    weights = os.path.join(torch.hub.get_dir(), "checkpoints", _TRUNK_FILES[net])
    problem = None
    if os.path.isfile(weights) or os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            model = lpips_quietly(net=net, verbose=False)
        except Exception as error:  # offline machine: no trunk weights to download
            problem = f"{type(error).__name__}: {error}"
    else:
        problem = "HF_HUB_OFFLINE=1 and no cached torchvision weights"
    if problem is not None:
        warnings.warn(f"LPIPS-{net}: no ImageNet trunk ({problem}); falling back to a seeded random trunk. The "
                      "congealing loss is weaker than the paper's; put the torchvision weights in the torch hub "
                      "cache (or run once online) for the real LPIPS.", stacklevel=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = lpips_quietly(net=net, pnet_rand=True, verbose=False)
    return model.eval().requires_grad_(False)


def perceptual_distance(perceptual, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS per sample (B,) between image batches in [-1, 1], computed in float32."""
    return perceptual(a.float(), b.float(), normalize=False).flatten(1).mean(1)


def tv_loss(flow: torch.Tensor) -> torch.Tensor:
    """L_TV: Huber total variation of the residual flow (B, H, W, 2), batch mean."""
    return total_variation(flow.float()).mean()


def identity_loss(flow: torch.Tensor) -> torch.Tensor:
    """L_I = ||g||^2 on the residual flow (mean over pixels and batch): stay near the identity."""
    return flow.float().square().sum(-1).mean()


def congealing_loss(perceptual, congealed: torch.Tensor, target: torch.Tensor, flow: torch.Tensor, num_heads: int,
                    lambda_tv: float, lambda_identity: float) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Eq. 5 (eq. 6 for K > 1). congealed, target: (B*K, 3, H, W) n-major / k-minor; flow (B*K, F, F, 2).

    Returns the total loss, its terms (for logging) and the assigned cluster per sample (B,)."""
    align = perceptual_distance(perceptual, congealed, target).view(-1, num_heads)  # (B, K)
    best, assignment = align.min(1)
    terms = {"align": best.mean(), "tv": tv_loss(flow), "identity": identity_loss(flow)}
    total = terms["align"] + lambda_tv * terms["tv"] + lambda_identity * terms["identity"]
    return total, terms, assignment
