"""CoordGAN: self-supervised dense correspondences emerge from GANs (Mu et al., CVPR 2022).

Implementation arrives with the CoordGAN issue: model.py, encoder.py, discriminator.py,
losses.py, correspondence.py, pipeline.py, evaluate.py. Self-contained: imports no other
package of this project.
"""
