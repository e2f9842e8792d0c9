"""The variants a pipeline trains, in one registry (a leaf module): adding a
variant touches this registry and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Training data: digits only; digits + isolated concept images; digits +
#: concept images of which a share are composites of several concepts.
DIGITS, CONCEPTS, COMPOSITES = "digits", "digits+concepts", "digits+composites"

#: What ``concept_paper`` trains with, whatever the config says: isolated concept
#: images, exclusive targets, BCE on the concept logits of the decoded sample ``z``,
#: weight 100 from the first step (the recipe of the reproduction's first runs),
#: no union term.
PAPER_RECIPE = {
    "concepts": {"composite_fraction": 0.0, "train_shift": 0},
    "loss": {
        "concept_weight": 100.0,
        "concept_loss": "bce",
        "concept_decode": "z",
        "concept_warmup_epochs": 0.0,
        "union_weight": 0.0,
    },
}

#: What ``concept_paper_tuned`` trains with: :data:`PAPER_RECIPE` with the loss as
#: the paper writes it (MSE, its section 3.4) x 10 on the decoding of ``mu``, the
#: paper family's choice on validation data (``results/sweeps/quick-val``,
#: candidate ``paper_mse_mu_w10``; a test checks the two agree).
PAPER_TUNED = {
    "concepts": PAPER_RECIPE["concepts"],
    "loss": {
        **PAPER_RECIPE["loss"],
        "concept_weight": 10.0,
        "concept_loss": "mse",
        "concept_decode": "mu",
    },
}

#: Config keys that only composites depend on, and those of the concept loss.
COMPOSITE_KEYS = ("composite_fraction", "max_parts", "train_shift")
CONCEPT_LOSS_KEYS = (
    "concept_weight",
    "concept_target",
    "concept_loss",
    "concept_decode",
    "concept_warmup_epochs",
    "union_weight",
)


@dataclass(frozen=True)
class Variant:
    """One trained variant: its ``name`` (run folders are ``<name>-<run key>``),
    what it is (``about``), trains on (``data``: :data:`DIGITS`, :data:`CONCEPTS` or
    :data:`COMPOSITES`), whether with a ``concept_loss``, its sweep ``family``
    (``reference``, ``paper`` or ``concept``) and ``recipe``, fixed ``{section: {key:
    value}}`` settings over the config (None: none) that a sweep's overrides follow."""

    name: str
    about: str
    data: str
    concept_loss: bool
    family: str = "reference"
    recipe: dict[str, dict[str, Any]] | None = None

    @property
    def sees_concepts(self) -> bool:
        """Whether concept images are among its training images."""
        return self.data != DIGITS

    def key_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Drop from a run key's config ``payload`` (edited in place and
        returned) what this variant's training does not read."""
        if not self.sees_concepts:
            payload.pop("concepts")  # digits only
        elif self.data != COMPOSITES:
            for key in COMPOSITE_KEYS:
                payload["concepts"].pop(key, None)
        if not self.concept_loss:
            for key in CONCEPT_LOSS_KEYS:
                payload["loss"].pop(key, None)
        payload["variant"] = self.name
        return payload


REGISTRY: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", "the VAE on digits only", DIGITS, False),
        Variant("augmented", "digits + concept images, no concept loss", CONCEPTS,
                False),
        Variant("concept_paper", "the paper's recipe as read here (PAPER_RECIPE): "
                "isolated concepts, BCE x 100 on the decoded sample z", CONCEPTS,
                True, family="paper", recipe=PAPER_RECIPE),
        Variant("concept_paper_tuned", "the paper's recipe, tuned on validation "
                "(PAPER_TUNED): isolated concepts, MSE x 10 on the decoding of mu",
                CONCEPTS, True, family="paper", recipe=PAPER_TUNED),
        Variant("concept", "this project's: composites, the config's concept loss "
                "(on mu)", COMPOSITES, True, family="concept"),
    )
}  # fmt: skip


def get(name: str) -> Variant:
    """The registered variant ``name``; ValueError for an unknown name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown variant {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


#: All variant names, and those trained with a concept loss, in registry order.
NAMES = tuple(REGISTRY)
CONCEPT_NAMES = tuple(n for n, v in REGISTRY.items() if v.concept_loss)
