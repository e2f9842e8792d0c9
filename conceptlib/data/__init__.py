"""Data: the MNIST digits, the concept catalogue and the concept images cut from
them, and the digit splits (train, validation, test).

- :mod:`~conceptlib.data.mnist`: MNIST sources (embedded wheel, IDX, npz, pickle),
  the validated uint8 cache, and ``to_input`` (pixels to the model's inputs);
- :mod:`~conceptlib.data.catalogue`: the 18-concept catalogue, box sampling,
  concept images, composites and shifts (the paper's section 3.5);
- :mod:`~conceptlib.data.splits`: which digits are held out, and the guard that
  refuses test digits to every chooser.
"""
