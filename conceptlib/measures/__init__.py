"""Measures: functions of models and arrays that the chapters report.

- :mod:`~conceptlib.measures.likelihood`: recon BCE, KL, -ELBO, importance-sampled
  NLL, concept accuracy;
- :mod:`~conceptlib.measures.cluster`: k-means on latent images and layer-3 maps;
- :mod:`~conceptlib.measures.vocab`: the public read-out (``load_concept_model``,
  ``concept_maps``), probes, Network Dissection with its rotation control, parts;
- :mod:`~conceptlib.measures.formulas`: compositional explanations of channels;
- :mod:`~conceptlib.measures.classifier`: the independent digit classifier;
- :mod:`~conceptlib.measures.explain`: explain one image through its concepts.
"""
