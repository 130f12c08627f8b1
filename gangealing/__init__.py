"""GANgealing: GAN-supervised dense visual alignment (Peebles et al., CVPR 2022).

    from gangealing import GANgealingPipeline
    pipe = GANgealingPipeline.from_pretrained("checkpoints/gangealing-faces")
    out = pipe.congeal(images)   # CongealOutput; pipe.propagate_edit(edit_rgba, images) paints them all

(a runnable example is in GANgealingPipeline's docstring).

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

from .pipeline import Alignment, CongealOutput, CorrespondenceOutput, GANgealingPipeline  # noqa: E402


def tiny_random_pipeline(seed: int = 0) -> GANgealingPipeline:
    """A micro GANgealingPipeline with random weights (32 px, K = 1, fast on CPU), for tests and
    UI development. Its warp heads get small random weights, so it congeals to a mild,
    non-identity warp (it is not trained: the alignment means nothing)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = StyleGAN2Generator(**GENERATOR_CONFIGS["micro"])
        transformer = SpatialTransformer(**TRANSFORMER_CONFIGS["micro"])
        target = LearnedTarget(num_directions=1, num_latents=generator.num_latents, inject_index=4,
                               style_dim=generator.style_dim)
        with torch.no_grad():
            transformer.stns[0].warp_head.linear.weight.normal_(0, 0.01)
            transformer.stns[1].warp_head.flow_out[2].weight.normal_(0, 0.01)
            target.fit_pca(generator.mapping(torch.randn(256, generator.style_dim)))
    return GANgealingPipeline(generator.eval(), transformer.eval(), target.eval(), None)


__all__ += ["Alignment", "CongealOutput", "CorrespondenceOutput", "GANgealingPipeline", "tiny_random_pipeline"]
