"""Time the generation of the paper's 54,000 concept images (3,000 x 18 concepts).

Prints the median and spread over repeats, for the vectorised generator in
``conceptlib.data.catalogue.make_concepts``, with sources drawn from the 60,000 training
digits (p = 0.8) and decoded centres stood in for by class means.

    .venv/bin/python benchmarks/concept_generation.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from conceptlib.data.catalogue import fit_variants, load_catalogue, make_concepts
from conceptlib.data.mnist import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--per-concept", type=int, default=3000)
    args = parser.parse_args()
    mnist = load_mnist()
    x, y = mnist.x_train, mnist.y_train
    cat = load_catalogue("mnist")
    variant = fit_variants(x, y, cat).assign(x, y)
    centres = np.stack([x[y == d].mean(0) for d in range(10)]).astype(np.uint8)
    times = []
    for i in range(args.repeats):
        rng = np.random.default_rng(i)
        t0 = time.perf_counter()
        out = make_concepts(cat, args.per_concept, x, y, variant, rng, centres, 0.8)
        times.append(time.perf_counter() - t0)
    n = len(out.y)
    med = statistics.median(times)
    print(f"concept images      {n}")
    spread = f"min {min(times):.4f}, max {max(times):.4f}"
    print(f"median seconds      {med:.4f}  ({spread})")
    print(f"images per second   {n / med:,.0f}")
    print(f"target <= 0.2 s     {'met' if med <= 0.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
