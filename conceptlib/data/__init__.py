"""Data: MNIST (:mod:`~conceptlib.data.mnist`), the concept catalogue and concept
images (:mod:`~conceptlib.data.catalogue`), and the digit splits with the guard that
refuses test digits to every chooser (:mod:`~conceptlib.data.splits`)."""
