"""Measures: functions of models and arrays that the chapters report (modules of
:mod:`conceptlib.measures`).

- ``likelihood``: recon BCE, KL, -ELBO, importance-sampled NLL, concept accuracy,
  clustering scores; ``cluster``: k-means on latent images and layer-3 maps;
- ``probes``: held-out concept images with known ink; ``vocab``: the energy
  read-out, recognition, Network Dissection with its rotation control, digit
  parts, targets; ``formulas``: compositional explanations of channels;
- ``classifier``: the independent classifiers; ``explain``: one image's concepts.
"""
