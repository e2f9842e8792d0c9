"""Shared test data: a tiny MNIST and the command line of a small smoke run.

Test modules import it as ``helpers`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import numpy as np

from conceptlib.data.mnist import MNIST

#: ``reproduce`` on a smoke profile cut down further: three short epochs, and the
#: measures on fewer samples, probes and classifier digits; seconds.
SMALL_RUN_ARGS = [
    "reproduce",
    "--profile",
    "smoke",
    "--quiet",
    "--no-figures",
    "--device",
    "cpu",
    "--set",
    "train.num_epochs=3",
    "--set",
    "data.num_train_digits=800",
    "--set",
    "data.num_test_digits=200",
    "--set",
    "concepts.per_concept=20",
    "--set",
    "concepts.test_per_concept=5",
    "--set",
    "cluster.max_points=200",
    "--set",
    "eval.nll_samples=50",
    "--set",
    "concepts.probe_size=60",
    "--set",
    "eval.classifier_digits=500",
]


def small_mnist(n_train: int = 12, n_test: int = 7) -> MNIST:
    """Random uint8 digits with labels 0..9, too few to train on."""
    rng = np.random.default_rng(1)
    return MNIST(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train, dtype=np.int64) % 10,
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test).astype(np.int64),
        source="test",
    )
