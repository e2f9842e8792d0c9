"""Train: the training loop, the run cache and the runtime (device, precision,
seeds, distributed set-up).

- :mod:`~conceptlib.train.loop`: ``train_vae``, checkpoints, resume, and
  ``get_or_train`` over the content-keyed run cache;
- :mod:`~conceptlib.train.runtime`: device and precision detection, seeding.
"""
