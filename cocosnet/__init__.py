"""CoCosNet: cross-domain correspondence learning for exemplar-based image translation
(Zhang et al., CVPR 2020).

Implementation arrives with the CoCosNet issue. Self-contained: imports no other project package.
"""
