"""GANgealing: GAN-supervised dense visual alignment (Peebles et al., CVPR 2022).

>>> from gangealing import GANgealingPipeline  # doctest: +SKIP
>>> pipe = GANgealingPipeline.from_pretrained("checkpoints/gangealing-faces")  # doctest: +SKIP

Self-contained: imports no other project package.
"""

from .stylegan2 import GENERATOR_CONFIGS, StyleGAN2Discriminator, StyleGAN2Generator
from .target import LearnedTarget
from .transformer import TRANSFORMER_CONFIGS, ClusterClassifier, SpatialTransformer

__all__ = [
    "GENERATOR_CONFIGS",
    "TRANSFORMER_CONFIGS",
    "ClusterClassifier",
    "LearnedTarget",
    "SpatialTransformer",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
]
