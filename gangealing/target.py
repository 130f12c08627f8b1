"""The learned congealing target (section 3.2): c = mean_w + sum_i alpha_i d_i over the top-N
principal directions d_i of W (eq. 4), and the per-sample target G(mix(c, w)): c (interpolated
towards w by psi) feeds the first `inject_index` W+ layers, w feeds the rest.

Same state_dict as the authors' `ll` (coefficients (K, N), directions (N, D), lat_mean (1, D)).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class LearnedTarget(ModelMixin, ConfigMixin):
    """alpha (the `coefficients`, K x N, trained, zero init) over fixed PCA directions of W."""

    @register_to_config
    def __init__(self, num_directions: int = 1, num_heads: int = 1, inject_index: int = 5, num_latents: int = 14,
                 style_dim: int = 512):
        super().__init__()
        if not 0 < inject_index <= num_latents:
            raise ValueError(f"inject_index must be in 1..num_latents ({num_latents}), got {inject_index}")
        self.coefficients = nn.Parameter(torch.zeros(num_heads, num_directions))
        self.register_buffer("directions", torch.zeros(num_directions, style_dim))
        self.register_buffer("lat_mean", torch.zeros(1, style_dim))

    @torch.no_grad()
    def fit_pca(self, w: torch.Tensor) -> None:
        """Set lat_mean and the directions from samples of W (n, D): the mean and the top-N
        principal directions (unit vectors). K > 1: alpha starts at k-means++ seeds projected
        onto the directions (section 3.4); K = 1: alpha = 0, i.e. c = mean w."""
        mean = w.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(w - mean, full_matrices=False)
        self.lat_mean.copy_(mean)
        self.directions.copy_(v[: self.config.num_directions])
        k = self.config.num_heads
        if k > 1:
            proj = (w - mean) @ self.directions.T  # (n, N)
            g = torch.Generator().manual_seed(0)
            seeds = [proj[torch.randint(len(proj), (1,), generator=g)]]
            for _ in range(1, k):  # k-means++ seeding
                d2 = torch.cdist(proj, torch.cat(seeds)).square().amin(1)
                seeds.append(proj[torch.multinomial(d2 / d2.sum(), 1, generator=g)])
            self.coefficients.copy_(torch.cat(seeds))
        else:
            self.coefficients.zero_()

    def target_latent(self) -> torch.Tensor:
        """c (K, D), eq. 4."""
        return self.lat_mean + self.coefficients @ self.directions

    def forward(self, w: torch.Tensor, psi: float = 0.0, unfold: bool = False) -> torch.Tensor:
        """w (B, D) -> per-sample target W+ (B*K, L, D), rows n-major / k-minor ((B, K, L, D) with unfold).

        The first inject_index layers hold lerp(c_k, w, psi), the others w; psi = 1 gives w."""
        b, d = w.shape
        k, n = self.config.num_heads, self.config.num_latents
        mixed = torch.lerp(self.target_latent()[None].to(w.dtype), w[:, None], psi)  # (B, K, D)
        inject = self.config.inject_index
        head = mixed[:, :, None].expand(-1, -1, inject, -1)
        tail = w[:, None, None].expand(-1, k, n - inject, -1)
        out = torch.cat([head, tail], 2)  # (B, K, L, D)
        return out if unfold else out.reshape(b * k, n, d)


def psi_schedule(step: int, anneal_steps: int) -> float:
    """psi annealed from 1 to 0 with a cosine over the first anneal_steps (then 0)."""
    if step >= anneal_steps:
        return 0.0
    return 0.5 * (1 + math.cos(math.pi * step / anneal_steps))
