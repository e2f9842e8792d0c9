"""The whole pipeline of the paper, step by step, for one config and one seed.

:class:`Pipeline` computes each step on first use and keeps it (``pipe.catalogue``,
``pipe.baseline``, ``pipe.run("concept")``, ``pipe.metrics()``...); trained variants
come from the run cache when present. Steps [paper section]: the digits and their
70/30 split [3.2]; the baseline [3.1]; representatives [3.5 step 1]; concept images
[3.3, 3.5]; the other variants [3.4]; measures on the splits, the vocabulary probes
and the four clusterings of section 4. The data live in
:mod:`~conceptlib.experiment.data`, the measures in
:mod:`~conceptlib.experiment.measures`.
"""

from __future__ import annotations

import copy
import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from conceptlib.config import VARIANTS, ExperimentConfig, variant_config
from conceptlib.data.mnist import MNIST
from conceptlib.data.splits import check_split
from conceptlib.experiment import measures as m
from conceptlib.experiment.data import ImageSet, PipelineData, subsample_stratified
from conceptlib.experiment.measures import CLASSIFIER_SEED
from conceptlib.measures.classifier import predict
from conceptlib.measures.formulas import explain_model
from conceptlib.model import variants
from conceptlib.model.readout import ConceptModel, load_concept_model
from conceptlib.operators.evaluate import measure_operators
from conceptlib.train.loop import Run, get_or_train, run_folder
from conceptlib.train.runtime import resolve_device, resolve_precision

SPLITS = ("val", "test_digits", "test_concepts")
#: Every split :meth:`Pipeline.evaluate` measures.
EVAL_SPLITS = (*SPLITS, "val_digits", "val_concepts")
CLUSTERINGS = {
    "digits_latent": "1. latent images of training digits (labels 0-9), 10 clusters",
    "concepts_latent": "2. latent images of training concepts (labels 10-27), "
    "K clusters",
    "layer3_with_concept_loss": "3. concept-layer maps of training concepts, "
    "concept_paper variant (the paper's method), K clusters",
    "layer3_without_concept_loss": "4. concept-layer maps of training concepts, "
    "augmented variant, K clusters",
}
__all__ = ["CLASSIFIER_SEED", "EVAL_SPLITS", "ImageSet", "Pipeline", "SPLITS"]
__all__ += ["seed_model", "subsample_stratified"]


class Pipeline(PipelineData):
    """One config (its ``seed`` used throughout), every step of the paper, computed on
    demand. ``device``: ``auto``, ``cpu``, ``cuda`` or a :class:`torch.device`;
    ``cache_dir``: the run cache; ``mnist``: an already loaded :class:`MNIST` (else
    ``cfg.data.source`` is read); ``recipe``: ``section.key=value`` overrides of
    ``concept_paper``'s fixed recipe (:func:`~conceptlib.config.variant_config`),
    keyed by the run cache."""

    def __init__(
        self, cfg: ExperimentConfig, device: str | torch.device = "auto",
        cache_dir: str | Path = "runs", progress: bool = True,
        mnist: MNIST | None = None, recipe: tuple[str, ...] | list[str] = (),
    ) -> None:  # fmt: skip
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        self.device, self.cfg = dev, resolve_precision(cfg, dev)  # precision=auto
        self.cache_dir = Path(cache_dir)
        self.progress = progress
        self._mnist = mnist
        self.recipe = tuple(recipe)
        if self.recipe:
            for v in VARIANTS:  # a bad override stops here
                self.variant_config(v)
        self._runs: dict[str, Run] = {}
        self._recorded: dict[str, Any] = {}
        self._latents: dict[str, Any] = {}  # variant -> its latent baseline

    def use_recorded(self, measures: dict[str, Any]) -> None:
        """Answer :meth:`evaluate`, :meth:`vocabulary`, :meth:`concept_ceiling` and
        :meth:`edits` from one seed's recorded measures (a ``per_seed`` entry of
        ``metrics.json``, :func:`conceptlib.experiment.reproduce.recorded_seed`),
        which must be of this very config, seed and code."""
        self._recorded = measures

    def _known(self, *path: str) -> Any:
        """A copy of the recorded measure at ``path``, or None."""
        node: Any = self._recorded
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return copy.deepcopy(node)

    @cached_property
    def baseline(self) -> Run:
        """The baseline VAE, trained on the training split of the digits only."""
        return self.run("baseline")

    def variant_config(self, variant: str) -> ExperimentConfig:
        """``variant``'s config: :func:`variant_config` with :attr:`recipe`."""
        return variant_config(self.cfg, variant, self.recipe)

    def run(self, variant: str) -> Run:
        """The trained ``variant`` (from the run cache, or trained now)."""
        variants.get(variant)  # ValueError for an unknown name
        if variant not in self._runs:
            train = self.dataset(variant, "train")
            self._runs[variant] = get_or_train(
                self.variant_config(variant), variant, train.x, train.y,
                len(self.catalogue), cache_dir=self.cache_dir, device=self.device,
                progress=self.progress, parts=train.parts,
            )  # fmt: skip
        return self._runs[variant]

    def training_plan(self) -> dict[str, int]:
        """Image-steps (training images x epochs) of each variant not yet in the run
        cache, from the config alone: no model is trained or loaded."""
        c = self.cfg
        keep = 1 - c.data.val_fraction
        digits = min(c.data.num_train_digits, len(self.mnist.y_train)) * keep
        concepts = c.concepts.per_concept * len(self.catalogue) * keep
        plan = {}
        for v in VARIANTS:
            folder = run_folder(self.cache_dir, self.variant_config(v), v, self.device)
            if not (folder / "model.pt").exists():
                images = digits + (concepts if variants.get(v).sees_concepts else 0)
                plan[v] = round(images * c.train.num_epochs)
        return plan

    # -- measures (conceptlib.experiment.measures) --------------------------------
    def evaluate(self, variant: str, split: str) -> dict[str, float]:
        """Every DESIGN.md measure of ``variant`` on ``split`` (:data:`EVAL_SPLITS`)."""
        known = self._known("variants", variant, split)
        return known if known is not None else m.evaluate_split(self, variant, split)

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{variant: {split: {measure: value}}}`` for all variants and splits."""
        return {v: {s: self.evaluate(v, s) for s in SPLITS} for v in VARIANTS}

    @cached_property
    def probes(self):
        """The vocabulary probes cut from the test digits."""
        return m.probes(self, "test")

    @cached_property
    def val_probes(self):
        """The vocabulary probes cut from the validation digits, as :attr:`probes`."""
        return m.probes(self, "val")

    def probe_set(self, split: str = "test"):
        """The vocabulary probes cut from the ``val`` or ``test`` digits."""
        return self.val_probes if check_split(split) == "val" else self.probes

    def vocabulary(self, variant: str, split: str = "test") -> dict:
        """The vocabulary measures of ``variant`` on the probes of ``split``
        (:mod:`conceptlib.measures.vocab`) and ``part_hit``, ``part_overlap``,
        ``part_hit_per_concept`` on the digits of that split."""
        check_split(split)
        known = self._known("vocabulary", variant) if split == "test" else None
        return known if known is not None else m.vocabulary(self, variant, split)

    def likelihood(self, variant: str) -> dict[str, float]:
        """Importance-sampled NLL of the first ``eval.nll_digits`` test digits:
        ``is_nll``, its standard error ``is_nll_se`` and ``is_nll_neg_elbo``."""
        return m.likelihood(self, variant)

    def concept_ceiling(self) -> dict[str, float]:
        """A supervised CNN on the same concept images: a reference (the metrics
        key ``classifier_ceiling`` is kept for outside code)."""
        known = self._known("vocabulary", "classifier_ceiling", "accuracy")
        return known if known is not None else m.concept_ceiling(self)

    @cached_property
    def digit_classifier(self):
        """The evaluation-only digit classifier (seed :data:`CLASSIFIER_SEED`)."""
        return m.train_digit_classifier(self)

    @cached_property
    def classifier_accuracy(self) -> float:
        """Accuracy of :attr:`digit_classifier` on all MNIST test digits."""
        probs = predict(self.digit_classifier, self.mnist.x_test)
        return float((probs.argmax(1) == self.mnist.y_test).mean())

    def concept_model(self, variant: str = "concept") -> ConceptModel:
        """``variant``'s trained run as a :class:`ConceptModel`."""
        run = self.run(variant)
        return ConceptModel(run.model, self.cfg, self.catalogue, run.path)

    def edits(self, variant: str = "concept") -> dict[str, Any]:
        """:func:`~conceptlib.operators.evaluate.measure_operators` of ``variant``."""
        known = self._known("operators", variant)
        if known is not None:
            return known
        return measure_operators(self.concept_model(variant), self)

    def meaning(self, variant: str = "concept", split: str = "test") -> dict:
        """:func:`~conceptlib.experiment.measures.meaning` of ``variant`` on the
        ``split`` digits; the latent baseline is chosen once per variant."""
        cm = self.concept_model(variant)
        if variant not in self._latents:
            self._latents[variant] = m.latent_baseline(self, cm)
        return m.meaning(self, cm, split, self._latents[variant])

    def formulas(self, variant: str, num_probes: int = 1500) -> list:
        """A formula over concepts per concept-layer channel of ``variant``."""
        return explain_model(self.run(variant).model, self.probes, num_probes)

    def digit_parts(self, variant: str, split: str = "test"):
        """:func:`~conceptlib.measures.vocab.digit_parts` on ``test``/``val`` digits."""
        return m.parts_of_digits(self, variant, split)

    def alignment(self, variant: str = "concept", split: str = "test") -> dict:
        """Concept alignment on whole ``test`` (or ``val``) digits: ``own`` and
        ``uniform`` shares (:mod:`conceptlib.measures.explain`)."""
        return m.alignment(self, variant, split)

    @cached_property
    def clusterings(self) -> dict:
        """The four clusterings of section 4 (:data:`CLUSTERINGS`)."""
        return m.clusterings(self)

    def decoded_centres(self, name: str):
        """Pictures of a clustering's centres and their matched labels."""
        return m.decoded_centres(self, name)


def seed_model(
    checkpoint: str | Path, seed: int, cache: str | Path, variant: str | None = None
) -> tuple[Pipeline, ConceptModel]:
    """The pipeline of a checkpoint's config at ``seed``, and the model of that
    seed: the checkpoint itself at its own seed, else ``variant`` (default: the
    checkpoint's file name) trained with the stored config, only ``seed``
    changed (or loaded from the run cache ``cache``)."""
    committed = load_concept_model(checkpoint)
    cfg = dataclasses.replace(committed.cfg, seed=seed)
    pipe = Pipeline(cfg, device="cpu", cache_dir=cache, progress=True)
    if seed == committed.cfg.seed:
        return pipe, committed
    return pipe, pipe.concept_model(variant or Path(checkpoint).stem)
