"""GANgealing: GAN-supervised dense visual alignment (Peebles et al., CVPR 2022).

Implementation arrives with the GANgealing issue (StyleGAN2 generator, spatial transformer,
learned target, pipeline, PCK evaluation). Self-contained: imports no other project package.
"""
