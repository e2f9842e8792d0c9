"""Model: the fully convolutional VAE and its losses.

- :mod:`~conceptlib.model.vae`: the encoder, the 7x7 latent image, the decoder and
  its concept layer (decoder layer 3);
- :mod:`~conceptlib.model.losses`: reconstruction, KL and the concept losses.
"""
