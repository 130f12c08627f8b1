"""Checkpoints with the key layout of the authors' released files, built from this project's own
networks (whose layouts the fixture tests check against the authors' key lists), so that tests
and benchmarks need no fixtures. Every tensor is one stored zero expanded to its shape (torch.save
keeps the view), so a 150 M-value CoCosNet pair is a few kB on disk; the constant kernels the
converters check hold their real values.

    authors_checkpoint("coordgan")            {g, d, g_ema, g_optim, d_optim, d_patch} (train.py, 128 px)
    authors_checkpoint("coordgan-512")        the same at 512 px (celebA_512)
    authors_checkpoint("coordgan-encoder")    {g, e, g_ema, g_optim} (train-encoder.py)
    authors_checkpoint("gangealing")          {g_ema, t_ema, ll, args} (celeba: 128 px, K = 1)
    authors_checkpoint("cocosnet-G"), authors_checkpoint("cocosnet-Corr")   latest_net_G / _Corr.pth (celebahq)
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def zeros(shapes: dict) -> dict:
    return {k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}


def coordgan_g_ema(config: str = "celebA_128") -> dict:
    from coordgan.convert_official import generator_key_map
    from coordgan.model import CONFIGS, CoordGANGenerator

    with torch.device("meta"):
        key_map = generator_key_map(CoordGANGenerator(**CONFIGS[config]))
    from coordgan.layers import fir_kernel

    state = zeros({k: shape for k, (shape, _) in key_map.items()})
    state.update({k: fir_kernel() for k, (_, targets) in key_map.items() if targets[0][0] == "constant"})
    return state


def coordgan_e() -> dict:
    from coordgan.encoder import CoordGANOfficialEncoder

    encoder = CoordGANOfficialEncoder().state_dict()
    return {k: v if k.endswith("Blur.kernel") else torch.zeros(()).expand(v.shape) for k, v in encoder.items()}


def gangealing_parts() -> dict:
    from gangealing.stylegan2 import StyleGAN2Generator
    from gangealing.target import LearnedTarget
    from gangealing.transformer import SpatialTransformer

    with torch.device("meta"):
        g = StyleGAN2Generator(resolution=128, style_dim=512, n_mlp=8, channel_multiplier=1.0)
        t = SpatialTransformer(flow_size=128, input_size=256, channel_multiplier=0.5, num_heads=1)
        ll = LearnedTarget(num_directions=512, num_heads=1, inject_index=6, num_latents=g.num_latents, style_dim=512)
    return {
        name: zeros({k: v.shape for k, v in net.state_dict().items()})
        for name, net in (("g_ema", g), ("t_ema", t), ("ll", ll))
    }


def cocosnet_parts(config: str = "celebahq") -> dict:
    from cocosnet.model import CONFIGS, CoCosNetCorrespondence, CoCosNetGenerator, network_configs

    corr_kwargs, gen_kwargs, _ = network_configs(CONFIGS[config])
    with torch.device("meta"):
        corr, gen = CoCosNetCorrespondence(**corr_kwargs), CoCosNetGenerator(**gen_kwargs)
    return {
        "G": zeros({k: v.shape for k, v in gen.state_dict().items()}),
        "Corr": zeros({k: v.shape for k, v in corr.state_dict().items()}),
    }


def authors_checkpoint(kind: str):
    """The object torch.save writes for `kind` (see the module docstring)."""
    if kind == "coordgan":
        g_ema = coordgan_g_ema()
        return {"g": g_ema, "d": {}, "g_ema": g_ema, "g_optim": {}, "d_optim": {}, "d_patch": {}}
    if kind == "coordgan-512":
        g_ema = coordgan_g_ema("celebA_512")
        return {"g": g_ema, "d": {}, "g_ema": g_ema, "g_optim": {}, "d_optim": {}, "d_patch": {}}
    if kind == "coordgan-encoder":
        g_ema = coordgan_g_ema()
        return {"g": g_ema, "e": coordgan_e(), "g_ema": g_ema, "g_optim": {}}
    if kind == "gangealing":
        return {**gangealing_parts(), "args": argparse.Namespace(inject=6)}
    if kind.startswith("cocosnet-"):
        return cocosnet_parts()[kind.split("-", 1)[1]]
    raise ValueError(f"unknown kind {kind!r}")
