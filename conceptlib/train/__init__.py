"""Train: the loop, checkpoints and the run cache (:mod:`~conceptlib.train.loop`),
and device, precision, seeds and processes (:mod:`~conceptlib.train.runtime`)."""
