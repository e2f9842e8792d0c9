"""Model: the VAE and its concept layer (:mod:`~conceptlib.model.vae`), its losses
(:mod:`~conceptlib.model.losses`), the union of two concept layers
(:mod:`~conceptlib.model.compose`), the variant registry
(:mod:`~conceptlib.model.variants`) and the read-out (:mod:`~conceptlib.model.readout`).
"""
