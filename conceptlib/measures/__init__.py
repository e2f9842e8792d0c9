"""Measures: functions of models and arrays that the chapters report.

- :mod:`~conceptlib.measures.likelihood`: recon BCE, KL, -ELBO, importance-sampled
  NLL, concept accuracy, clustering scores;
- :mod:`~conceptlib.measures.cluster`: k-means on latent images and layer-3 maps;
- :mod:`~conceptlib.measures.probes`: held-out concept images with known ink;
- :mod:`~conceptlib.measures.vocab`: the energy read-out, recognition, Network
  Dissection with its rotation control, digit parts, targets;
- :mod:`~conceptlib.measures.formulas`: compositional explanations of channels;
- :mod:`~conceptlib.measures.classifier`: the independent digit classifier;
- :mod:`~conceptlib.measures.explain`: explain one image through its concepts.
"""
