"""An ipywidgets explorer of the operators, and its static twin for the book.

In Jupyter, :func:`operator_explorer` shows a test digit, one checkbox per
concept (untick to remove it), a concept to move with two sliders, and updates
the decoded image, its concept maps (re-encoded) and the digit classifier's
reading. The rendered HTML book cannot run a kernel, so the chapter shows
:func:`plot_edits`, a fixed set of edits drawn the same way.

See: chapter ``ch-operators``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from conceptlib import operators as op
from conceptlib.model.readout import ConceptModel, concept_maps


def concept_colours(k: int) -> np.ndarray:
    """``(K, 3)`` distinct RGB colours, one per concept."""
    import matplotlib

    return matplotlib.colormaps["tab20"](np.arange(k) % 20)[:, :3]


def map_image(maps: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` maps -> ``(H, W, 3)``: each pixel coloured by its strongest
    concept, as bright as that map."""
    k = len(maps)
    colours = concept_colours(k)
    strongest = maps.argmax(0)
    return colours[strongest] * maps.max(0)[..., None].clip(0, 1)


def _reading(classifier, image: np.ndarray) -> str:
    if classifier is None:
        return ""
    from conceptlib.measures.classifier import predict

    p = predict(classifier, image[None])[0]
    return f"classifier: {int(p.argmax())} ({p.max():.0%})"


def plot_edits(
    cm: ConceptModel,
    rows: Sequence[tuple[str, np.ndarray, np.ndarray]],
    classifier=None,
):
    """A figure of edits: per row, the image before, after, and the concept maps
    of the edited image (re-encoded), with the classifier's reading.

    Args:
        cm: the concept model.
        rows: ``(title, before, after)`` with ``(28, 28)`` uint8 images.
        classifier: the digit classifier, or None.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(rows), 3, figsize=(6.6, 2.3 * len(rows)), squeeze=False
    )
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


def operator_explorer(
    cm: ConceptModel, images: np.ndarray, classifier=None, protos=None
):
    """An ipywidgets explorer: pick a digit, toggle concepts, move one.

    Args:
        cm: the concept model.
        images: ``(N, 28, 28)`` uint8 digits to pick from.
        classifier: the digit classifier (its reading is shown), or None.
        protos: prototypes (:func:`conceptlib.operators.prototypes`) for adding
            a concept the digit lacks, or None (concepts can then only be removed
            and moved).

    Returns:
        An ``ipywidgets.VBox``; display it in Jupyter.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    names = list(cm.catalogue.names)
    pick = w.IntSlider(0, 0, len(images) - 1, description="digit")
    boxes = [w.Checkbox(value=False, description=n, indent=False) for n in names]
    mover = w.Dropdown(options=["(none)", *names], description="move")
    dx = w.IntSlider(0, -6, 6, description="dx")
    dy = w.IntSlider(0, -6, 6, description="dy")
    out = w.Output()
    hint = w.HTML(
        "Ticked concepts are the digit's top three; untick to remove one, tick "
        "another to add it" + (" from its prototype." if protos is not None else ".")
    )

    def top3(index: int) -> set[int]:
        maps = concept_maps(cm, images[index : index + 1])[0]
        return set(np.argsort(-(maps.astype(np.float64) ** 2).sum((1, 2)))[:3])

    state = {"top": top3(0)}

    def reset(change=None) -> None:
        state["top"] = top3(pick.value)
        state["before"] = op.apply(cm, images[pick.value], [])[1]  # once per digit
        for i, box in enumerate(boxes):
            box.value = i in state["top"]
        draw()

    def draw(change=None) -> None:
        top = state["top"]
        steps = [
            op.Step("remove", i)
            for i, b in enumerate(boxes)
            if i in top and not b.value
        ]
        if protos is not None:
            steps += [
                op.Step("add", i)
                for i, b in enumerate(boxes)
                if i not in top and b.value
            ]
        if mover.value != "(none)" and (dx.value or dy.value):
            steps.append(
                op.Step("move", names.index(mover.value), dx=dx.value, dy=dy.value)
            )
        after = op.apply(cm, images[pick.value], steps, protos)[1]
        with out:
            out.clear_output(wait=True)
            fig = plot_edits(cm, [("edited", state["before"], after)], classifier)
            display(fig)
            plt.close(fig)

    pick.observe(reset, "value")
    for widget in (*boxes, mover, dx, dy):
        widget.observe(draw, "value")
    reset()
    grid = w.GridBox(boxes, layout=w.Layout(grid_template_columns="repeat(3, 33%)"))
    return w.VBox([pick, hint, grid, w.HBox([mover, dx, dy]), out])


__all__ = ["concept_colours", "map_image", "operator_explorer", "plot_edits"]
