"""``conceptlib edit``: ``--remove NAME``, ``--add NAME[@IMAGE]`` and ``--move
NAME:DX,DY[,SCALE]`` as :class:`~conceptlib.operators.Step` objects, applied to one
image (a concept added without an image comes from its prototype: the mean concept
layer of the held-out concept images cut from the test digits); the top concepts
before and after are read back by re-encoding. See chapter ``ch-operators``.
"""

from __future__ import annotations

import math

import numpy as np

from conceptlib.errors import ConceptlibError
from conceptlib.experiment.pipeline import Pipeline
from conceptlib.measures.explain import read_image, top_concepts, write_outputs
from conceptlib.model.readout import ConceptModel
from conceptlib.operators.algebra import Step, apply, prototypes, read, render
from conceptlib.operators.evaluate import TOP


def _concept(name: str, cm: ConceptModel) -> int:
    names = list(cm.catalogue.names)
    if name not in names:
        raise ConceptlibError(
            f"unknown concept {name!r}; the catalogue has: {', '.join(names)}"
        )
    return names.index(name)


def _move(value: str, cm: ConceptModel) -> Step:
    """``NAME:DX,DY[,SCALE]`` -> a move step."""
    name, sep, rest = value.partition(":")
    try:
        numbers = [float(v) for v in rest.split(",")] if sep else []
    except ValueError:
        numbers = []
    ok = len(numbers) in (2, 3) and all(math.isfinite(v) for v in numbers)
    if not ok or (len(numbers) == 3 and numbers[2] <= 0):
        raise ConceptlibError(
            f"--move {value}: expected NAME:DX,DY or NAME:DX,DY,SCALE with "
            "numbers (SCALE > 0), e.g. seven_top_bar:2,-1"
        )
    return Step("move", _concept(name, cm), None, *numbers)


def parse_steps(ops: list[tuple[str, str]], cm: ConceptModel) -> list[Step]:
    """``[(kind, value), ...]`` from the command line -> steps (images read)."""
    steps = []
    for kind, value in ops:
        if kind == "remove":
            steps.append(Step("remove", _concept(value, cm)))
        elif kind == "add":
            name, _, spec = value.partition("@")
            source = read_image(spec, cm.cfg.data.source)[0] if spec else None
            steps.append(Step("add", _concept(name, cm), source))
        else:
            steps.append(_move(value, cm))
    return steps


def run_edit(
    cm: ConceptModel,
    spec: str,
    steps: list[Step],
    cache: str = "runs",
    figure: str | None = None,
    out_json: str | None = None,
) -> str:
    """Edit the image ``spec`` (as for ``explain``) and return the report; write
    the before/after figure and the JSON (atomically) when asked."""
    image, name = read_image(spec, cm.cfg.data.source)
    protos = None
    if any(s.kind == "add" and s.source is None for s in steps):  # add a prototype
        tc = Pipeline(cm.cfg, "cpu", cache, progress=False).test_concepts
        protos = prototypes(cm, tc.x, tc.y - cm.catalogue.labels[0], len(cm.catalogue))
    _, edited = apply(cm, image, steps, protos)
    recon = render(cm, read(cm, image[None]))[0]
    before, after = (
        [(cm.catalogue.names[i], s) for i, s in top_concepts(cm, im, TOP)]
        for im in (recon, edited)
    )
    said = [
        f"{s.kind} {cm.catalogue.names[s.concept]}"
        + (f" by ({s.dx:g}, {s.dy:g}) x{s.scale:g}" if s.kind == "move" else "")
        for s in steps
    ]
    change = float(np.abs(edited.astype(float) - recon.astype(float)).mean() / 255)
    doc = {"image": name, "model": str(cm.path), "edits": said,
           "before": dict(before), "after": dict(after), "mean_abs_change": change,
           "edited": edited.tolist()}  # fmt: skip

    def draw():
        from conceptlib.report.plots import plot_images  # matplotlib: figures only

        images = np.stack([image, recon, edited]).astype(np.float32) / 255
        titles = ["input", "reconstruction", "edited"]
        return plot_images(images, titles, ncols=3, vrange=(0, 1))

    write_outputs(figure, draw, out_json, doc)
    return "\n".join([
        f"image: {name}",
        f"model: {cm.path}",
        "edits: " + "; ".join(said),
        "top concepts before: " + ", ".join(f"{n} {v:.2f}" for n, v in before),
        "top concepts after:  " + ", ".join(f"{n} {v:.2f}" for n, v in after),
        f"mean absolute pixel change: {change:.3f} (0..1)",
    ])  # fmt: skip
