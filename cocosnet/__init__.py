"""CoCosNet: cross-domain correspondence learning for exemplar-based image translation
(Zhang et al., CVPR 2020).

    from cocosnet import CoCosNetPipeline
    pipe = CoCosNetPipeline.from_pretrained("checkpoints/cocosnet-faces")
    out = pipe.translate(label_map, exemplar_photo, return_warped=True)   # TranslationOutput

model.py (correspondence network, SPADE translation network, multi-scale discriminator; CONFIGS),
layers.py, correspondence.py (eq. 3 and 4 as attention, never HW x HW), losses.py (eq. 8-13),
pipeline.py, convert_official.py (the authors' released checkpoints), evaluate.py; the inputs of the
authors' edge and pose models: encodings.py (channel stacks), openpose.py (keypoint parsing),
raster.py (skeleton drawing).
Self-contained: imports no other package of this project.
"""

from .model import (CONFIGS, CoCosNetCorrespondence, CoCosNetDiscriminator, CoCosNetGenerator, CorrespondenceOutput,
                    network_configs)
from .pipeline import CoCosNetPipeline, TranslationOutput, build_pipeline, tiny_random_pipeline

__all__ = [
    "CONFIGS",
    "CoCosNetCorrespondence",
    "CoCosNetDiscriminator",
    "CoCosNetGenerator",
    "CoCosNetPipeline",
    "CorrespondenceOutput",
    "TranslationOutput",
    "build_pipeline",
    "network_configs",
    "tiny_random_pipeline",
]
