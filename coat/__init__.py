"""COAT: correspondence-driven object appearance transfer (Jeon et al., BMVC 2022).

    from coat import COATPipeline
    pipe = COATPipeline.from_pretrained("checkpoints/coat-faces")
    out = pipe.transfer(content_photo, style_photo, n=3)          # TransferOutput
    pipe.match_points(photo_a, photo_b, [[30, 20]])               # PointMatches(points, confidence, heatmaps)

model.py (encoder E, modulation encoder E_mod, StyleGAN2-type decoder D; CONFIGS),
correspondence.py (eq. 1-3 and the eq. 5 negatives, in row blocks, never HW x HW),
losses.py (eq. 5-7), pipeline.py, evaluate.py (exact synthetic answers and baselines).
Self-contained: imports no other package of this project.
"""

from .correspondence import MatchStatistics, ScaleMatches, align_features, confident_matches, match_statistics
from .model import CONFIGS, COATDecoder, COATEncoder, COATModulationEncoder, network_configs
from .matching import PointMatches
from .pipeline import (COATForward, COATPipeline, ScaleCorrespondences, TransferOutput, build_pipeline,
                       coat_forward, tiny_random_pipeline)

__all__ = [
    "CONFIGS",
    "COATDecoder",
    "COATEncoder",
    "COATForward",
    "COATModulationEncoder",
    "COATPipeline",
    "MatchStatistics",
    "PointMatches",
    "ScaleCorrespondences",
    "ScaleMatches",
    "TransferOutput",
    "align_features",
    "build_pipeline",
    "coat_forward",
    "confident_matches",
    "match_statistics",
    "network_configs",
    "tiny_random_pipeline",
]
