"""CoordGAN: self-supervised dense correspondences emerge from GANs (Mu et al., CVPR 2022).

    from coordgan import CoordGANPipeline
    pipe = CoordGANPipeline.from_pretrained("checkpoints/coordgan-faces")

model.py (generator: mapping networks, coordinate warping network, modulated synthesis),
encoder.py (ours and the authors'), discriminator.py, losses.py, correspondence.py (eq. 1 and 7 without HW x HW
tensors), pipeline.py, evaluate.py, convert_official.py (the authors' checkpoints). Self-contained: imports no
other package of this project.
"""

from .encoder import ENCODER_CONFIGS, CoordGANEncoder, CoordGANOfficialEncoder
from .model import CONFIGS, CoordGANGenerator, GeneratorOutput
from .pipeline import CoordGANPipeline, EncodeOutput, GenerateOutput, tiny_random_pipeline

__all__ = [
    "CONFIGS",
    "ENCODER_CONFIGS",
    "CoordGANEncoder",
    "CoordGANOfficialEncoder",
    "CoordGANGenerator",
    "CoordGANPipeline",
    "EncodeOutput",
    "GenerateOutput",
    "GeneratorOutput",
    "tiny_random_pipeline",
]
