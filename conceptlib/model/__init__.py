"""Model: the fully convolutional VAE and its losses.

- :mod:`~conceptlib.model.vae`: the encoder, the 7x7 latent image, the decoder and
  its concept layer (decoder layer 3);
- :mod:`~conceptlib.model.losses`: reconstruction, KL, the concept losses and the
  union term;
- :mod:`~conceptlib.model.compose`: the union of two concept layers (the
  operators' ``add``, the union term's);
- :mod:`~conceptlib.model.variants`, :mod:`~conceptlib.model.readout`: the
  variant registry and the read-out.
"""
