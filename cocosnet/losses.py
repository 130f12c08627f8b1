"""CoCosNet objectives (section 3.3, eq. 8-14), one small function per term, and the VGG-19 features
they share."""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

# relu layers of torchvision's vgg19().features, by the names the paper uses
VGG_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_2": 13, "relu4_2": 22, "relu5_2": 31}
VGG_WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def random_vgg19_trunk(seed: int = 0) -> nn.Sequential:
    """VGG-19's convolutional trunk with torchvision's initialisation (Kaiming normal, fan_out; zero
    biases), seeded. Built without the 120M-weight classifier, which the losses never use."""
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = make_layers(cfgs["E"], batch_norm=False)
        for m in trunk.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return trunk


class VGG19Features(nn.Module):
    """Frozen VGG-19 trunk returning {layer name: activation} for images in [-1, 1].

    ImageNet weights come through torchvision (downloaded once into the torch cache on a machine
    with network access). With no cached weights and no network (or HF_HUB_OFFLINE=1 and nothing
    cached) it falls back, once, with a warning, to a randomly initialised trunk seeded with 0:
    random VGG features still compare local structure and colour statistics, but feature-matching,
    perceptual and contextual losses (eq. 8, 10, 11) are then much weaker guides than the paper's.
    """

    def __init__(self, layers=tuple(VGG_LAYERS)):
        super().__init__()
        import torchvision

        self.layers = tuple(layers)
        self.pretrained = False
        cached = os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", VGG_WEIGHTS_FILE))
        trunk = None
        if cached or os.environ.get("HF_HUB_OFFLINE") != "1":
            try:
                trunk = torchvision.models.vgg19(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1).features
                self.pretrained = True
            except Exception as error:  # no network
                reason = f"{type(error).__name__}: {error}"
        else:
            reason = "HF_HUB_OFFLINE=1 and no cached torchvision weights"
        if trunk is None:
            warnings.warn(
                f"VGG-19: ImageNet weights unavailable ({reason}); using a seeded random trunk. CoCosNet's feature-"
                "matching, perceptual and contextual losses (eq. 8, 10, 11) are much weaker with it. Run once with "
                f"network access (or put {VGG_WEIGHTS_FILE} in the torch hub cache) for the real VGG-19.",
                stacklevel=2,
            )
            trunk = random_vgg19_trunk(seed=0)
        last = max(VGG_LAYERS[name] for name in self.layers)
        self.trunk = trunk[: last + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen

    def forward(self, images: torch.Tensor) -> dict:
        x = ((images.float() + 1) / 2 - self.mean) / self.std
        wanted = {VGG_LAYERS[name]: name for name in self.layers}
        out = {}
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


_FEATURES: dict = {}


def vgg_features(device=None) -> VGG19Features:
    """One shared frozen VGG19Features per device (the fallback warning is given once)."""
    key = str(device)
    if key not in _FEATURES:
        _FEATURES[key] = VGG19Features().to(device)
    return _FEATURES[key]


# ------------------------------------------------------------------ eq. (8) - (12)

FEATURE_MATCHING_WEIGHTS = {"relu1_2": 1 / 32, "relu2_2": 1 / 16, "relu3_2": 1 / 8, "relu4_2": 1 / 4, "relu5_2": 1.0}
CONTEXTUAL_WEIGHTS = {"relu3_2": 2.0, "relu4_2": 4.0, "relu5_2": 8.0}


def feature_matching_loss(fake_features: dict, real_features: dict,
                          weights: dict = FEATURE_MATCHING_WEIGHTS) -> torch.Tensor:
    """Eq. (8): sum_l lambda_l || phi_l(G(x_A, x'_B)) - phi_l(x_B) ||_1 (on pseudo exemplar pairs)."""
    return sum(w * F.l1_loss(fake_features[name], real_features[name].detach()) for name, w in weights.items())


def domain_alignment_loss(input_features: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
    """Eq. (9): || F_{A->S}(x_A) - F_{B->S}(x_B) ||_1 for a paired (input map, image)."""
    return F.l1_loss(input_features, image_features)


def perceptual_loss(fake_features: dict, real_features: dict, layer: str = "relu4_2") -> torch.Tensor:
    """Eq. (10): || phi_l(x_B-hat) - phi_l(x_B) ||_1 at relu4_2 (high-level semantics)."""
    return F.l1_loss(fake_features[layer], real_features[layer].detach())


def contextual_similarity(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.1,
                          chunk_size: int = 1024) -> torch.Tensor:
    """(1/n) sum_i max_j A(x_i, y_j) of eq. (11) (Mechrez et al., 2018), per batch element.

    x (B, C, h, w), y (B, C, h', w'). Both are centred by y's mean feature and L2-normalised;
    d_ij = 1 - cos(x_i, y_j); relative distance d~_ij = d_ij / (min_k d_ik + 1e-5);
    A_ij = softmax_j((1 - d~_ij) / h). Rows of i are done in chunks (at most chunk x h'w' at a time).
    """
    mu = y.mean(dim=(2, 3), keepdim=True)
    xs = F.normalize((x - mu).flatten(2), dim=1).transpose(1, 2)  # (B, n, C)
    ys = F.normalize((y - mu).flatten(2), dim=1)  # (B, C, m)
    best = []
    for s in range(0, xs.shape[1], chunk_size):
        d = (1 - xs[:, s : s + chunk_size] @ ys).clamp_min(0)  # (B, chunk, m) cosine distances
        d_rel = d / (d.min(dim=-1, keepdim=True).values + 1e-5)
        a = torch.softmax((1 - d_rel) / bandwidth, dim=-1)
        best.append(a.max(dim=-1).values)  # (B, chunk)
    return torch.cat(best, 1).mean(1)  # (B,)


def contextual_loss(fake_features: dict, exemplar_features: dict, weights: dict = CONTEXTUAL_WEIGHTS,
                    bandwidth: float = 0.1) -> torch.Tensor:
    """Eq. (11): sum_l omega_l [-log CX_l(x_B-hat, y_B)]; relu3_2 average-pooled by 2 as in the authors' code."""
    total = 0.0
    for name, w in weights.items():
        x, y = fake_features[name], exemplar_features[name].detach()
        if name == "relu3_2":
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        total = total + w * (-torch.log(contextual_similarity(x, y, bandwidth) + 1e-5)).mean()
    return total


def cycle_correspondence_loss(cycle_warped: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
    """Eq. (12): || r_{y->x->y} - y_B ||_1, the exemplar pooled to the correspondence resolution."""
    return F.l1_loss(cycle_warped, F.adaptive_avg_pool2d(exemplar, cycle_warped.shape[-2:]))


# ------------------------------------------------------------------ eq. (13): hinge adversarial


def discriminator_hinge_loss(real_outputs: list, fake_outputs: list) -> torch.Tensor:
    """Eq. (13), D: -E[min(0, -1 + D(y))] - E[min(0, -1 - D(G(x, y)))], summed over the scales.
    Each element of the lists is one scale's list of features, the last being the patch logits."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real_outputs, fake_outputs))


def generator_hinge_loss(fake_outputs: list) -> torch.Tensor:
    """Eq. (13), G: -E[D(G(x_A, y_B))], summed over the scales."""
    return sum(-f[-1].mean() for f in fake_outputs)


def discriminator_feature_matching_loss(real_outputs: list, fake_outputs: list) -> torch.Tensor:
    """pix2pixHD's discriminator feature matching (the authors' code adds it, weight 10): L1 between
    D's intermediate features of the translation and of the real image, averaged over scales."""
    total = 0.0
    for r, f in zip(real_outputs, fake_outputs):
        total = total + sum(F.l1_loss(fi, ri.detach()) for fi, ri in zip(f[:-1], r[:-1]))
    return total / len(real_outputs)
