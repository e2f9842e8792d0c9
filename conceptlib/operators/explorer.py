"""An ipywidgets explorer of the operators, and its static twin for the book.

In Jupyter, :func:`operator_explorer` shows a test digit, one checkbox per concept
(untick to remove it, tick to add it), a concept to move with two sliders, and the
decoded image, its re-encoded concept maps and the digit classifier's reading. The
HTML book cannot run a kernel: it shows :func:`plot_edits`, fixed edits drawn the
same way.

See: chapter ``ch-operators``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from conceptlib import operators as op
from conceptlib.measures.classifier import predict
from conceptlib.measures.explain import top_concepts
from conceptlib.model.readout import ConceptModel, concept_maps


def map_image(maps: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` maps -> ``(H, W, 3)``: each pixel coloured by its strongest
    concept (one ``tab20`` colour per concept), as bright as that map."""
    import matplotlib  # optional heavy dependency: figures only

    colours = matplotlib.colormaps["tab20"](np.arange(len(maps)) % 20)[:, :3]
    return colours[maps.argmax(0)] * maps.max(0)[..., None].clip(0, 1)


def _reading(classifier, image: np.ndarray) -> str:
    if classifier is None:
        return ""
    p = predict(classifier, image[None])[0]
    return f"classifier: {int(p.argmax())} ({p.max():.0%})"


def plot_edits(
    cm: ConceptModel,
    rows: Sequence[tuple[str, np.ndarray, np.ndarray]],
    classifier=None,
):
    """A figure of edits: per ``(title, before, after)`` row of ``(28, 28)`` uint8
    images, the image before, after, and the concept maps of the edited image
    (re-encoded), with the reading of the digit ``classifier`` (or None)."""
    import matplotlib.pyplot as plt  # optional heavy dependency: figures only

    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.3 * n), squeeze=False)
    after_maps = concept_maps(cm, np.stack([r[2] for r in rows]))
    for i, (title, before, after) in enumerate(rows):
        panels = (
            (before, "before"),
            (after, f"after: {title}"),
            (map_image(after_maps[i]), _reading(classifier, after) or "concept maps"),
        )
        for ax, (img, name) in zip(axes[i], panels):
            ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.ndim == 2 else 1)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def _steps(ticked: list[bool], top: set[int], add: bool, move) -> list[op.Step]:
    """The edits the widgets ask for: unticked top concepts removed, ticked others
    added (when ``add``), and ``move``, ``(concept or None, dx, dy)``."""
    steps = [op.Step("remove", i) for i, t in enumerate(ticked) if i in top and not t]
    if add:
        steps += [op.Step("add", i) for i, t in enumerate(ticked) if i not in top and t]
    concept, dx, dy = move
    if concept is not None and (dx or dy):
        steps.append(op.Step("move", concept, dx=dx, dy=dy))
    return steps


def operator_explorer(
    cm: ConceptModel, images: np.ndarray, classifier=None, protos=None
):
    """An ipywidgets explorer (an ``ipywidgets.VBox``: display it in Jupyter): pick
    one of the ``(N, 28, 28)`` uint8 ``images``, toggle concepts, move one; with the
    reading of the digit ``classifier`` (or None). ``protos``: prototypes
    (:func:`conceptlib.operators.prototypes`) to add a concept the digit lacks, or
    None (concepts can then only be removed and moved)."""
    import ipywidgets as w  # optional: interactive use only
    import matplotlib.pyplot as plt  # optional heavy dependency: figures only
    from IPython.display import display  # optional: Jupyter only

    names = list(cm.catalogue.names)
    pick = w.IntSlider(0, 0, len(images) - 1, description="digit")
    boxes = [w.Checkbox(value=False, description=n, indent=False) for n in names]
    mover = w.Dropdown(options=["(none)", *names], description="move")
    dx, dy = (w.IntSlider(0, -6, 6, description=d) for d in ("dx", "dy"))
    out = w.Output()
    hint = w.HTML(
        "Ticked concepts are the digit's top three; untick to remove one, tick "
        "another to add it" + (" from its prototype." if protos is not None else ".")
    )
    state: dict = {}  # the digit's top concepts and its unedited image, set by reset

    def reset(change=None) -> None:
        state["top"] = {i for i, _ in top_concepts(cm, images[pick.value])}
        state["before"] = op.apply(cm, images[pick.value], [])[1]  # once per digit
        for i, box in enumerate(boxes):
            box.value = i in state["top"]
        draw()

    def draw(change=None) -> None:
        moved = None if mover.value == "(none)" else names.index(mover.value)
        ticked, move = [b.value for b in boxes], (moved, dx.value, dy.value)
        steps = _steps(ticked, state["top"], protos is not None, move)
        after = op.apply(cm, images[pick.value], steps, protos)[1]
        with out:  # plot_edits of the one edit, into the output widget
            out.clear_output(wait=True)
            edit = [("edited", state["before"], after)]
            display(fig := plot_edits(cm, edit, classifier))
            plt.close(fig)

    pick.observe(reset, "value")
    for widget in (*boxes, mover, dx, dy):
        widget.observe(draw, "value")
    reset()
    grid = w.GridBox(boxes, layout=w.Layout(grid_template_columns="repeat(3, 33%)"))
    return w.VBox([pick, hint, grid, w.HBox([mover, dx, dy]), out])
