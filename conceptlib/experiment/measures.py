"""The measures a pipeline takes of its variants: the methods of
:class:`PipelineMeasures`, which :class:`~conceptlib.experiment.pipeline.Pipeline`
inherits. Those that ``reproduce`` records answer from the record once
:meth:`PipelineMeasures.use_recorded` gave one.
"""

from __future__ import annotations

import copy
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlib.config import VARIANTS, config_hash, to_dict
from conceptlib.data.splits import check_split
from conceptlib.experiment.data import PipelineData, subsample_stratified
from conceptlib.files import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint
from conceptlib.measures.classifier import (
    MAX_EPOCHS,
    MIN_DELTA,
    PATIENCE,
    SHIFT,
    SmallCNN,
    multi_hot,
    predict,
    top_accuracy,
    train_multilabel,
)
from conceptlib.measures.explain import concept_shares, own_digit_share
from conceptlib.measures.formulas import explain_model
from conceptlib.measures.likelihood import evaluate as evaluate_model
from conceptlib.measures.likelihood import importance_nll
from conceptlib.measures.probes import make_probes
from conceptlib.measures.vocab import digit_parts, vocabulary_measures
from conceptlib.model.readout import ConceptModel
from conceptlib.operators.evaluate import digit_classifier as train_digit_classifier
from conceptlib.operators.evaluate import measure_operators, strongest_latent
from conceptlib.operators.meaning import meaning_edits
from conceptlib.report.tables import at

SPLITS = ("val", "test_digits", "test_concepts")
#: The seed of the evaluation-only digit classifier, whatever the models' seed,
#: so that the models of every seed are read by the same instrument.
CLASSIFIER_SEED = 0


class PipelineMeasures(PipelineData):
    """The measures of one config and seed; :meth:`run` and the attributes below
    are the subclass's."""

    cache_dir: Path
    progress: bool
    _recorded: dict[str, Any]
    _latents: dict[str, Any]  # variant -> its latent baseline

    def use_recorded(self, measures: dict[str, Any]) -> None:
        """Answer :meth:`evaluate`, :meth:`vocabulary`, :meth:`concept_ceiling` and
        :meth:`edits` from one seed's recorded measures (a ``per_seed`` entry of
        ``metrics.json``, :func:`conceptlib.experiment.reproduce.recorded_seed`),
        which must be of this very config, seed and code."""
        self._recorded = measures

    def cache_file(self, prefix: str, suffix: str, **extra: Any) -> Path:
        """``<run cache>/<prefix>-<key>.<suffix>``, keyed by the config (but for
        its ``eval`` section, and with the seed) and ``extra``."""
        payload = {k: v for k, v in to_dict(self.cfg).items() if k != "eval"}
        return self.cache_dir / f"{prefix}-{config_hash({**payload, **extra})}.{suffix}"

    def _known(self, *path: str) -> Any:
        """A copy of the recorded measure at ``path``, or None."""
        return copy.deepcopy(at(self._recorded, path))

    def evaluate(self, variant: str, split: str) -> dict[str, float]:
        """Every DESIGN.md measure of ``variant`` on ``split`` (``val``, its own
        30 %; ``val_digits``, ``val_concepts``, ``test_digits``, ``test_concepts``)."""
        known = self._known("variants", variant, split)
        if known is not None:
            return known
        data = self.dataset(variant, split)
        return evaluate_model(
            self.run(variant).model, data.x, data.y,
            batch_size=self.cfg.train.eval_batch_size, seed=self.cfg.seed,
        )  # fmt: skip

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{variant: {split: {measure: value}}}`` for all variants and splits."""
        return {v: {s: self.evaluate(v, s) for s in SPLITS} for v in VARIANTS}

    def probe_set(self, split: str = "test"):
        """The vocabulary probes cut from the ``val`` or ``test`` digits."""
        return self.val_probes if check_split(split) == "val" else self.probes

    @cached_property
    def probes(self):
        """The vocabulary probes cut from the test digits."""
        return self._make_probes("test")

    @cached_property
    def val_probes(self):
        """The vocabulary probes cut from the validation digits, as :attr:`probes`."""
        return self._make_probes("val")

    def _make_probes(self, split: str):
        held, c = self.held_digits(split), self.cfg
        return make_probes(
            self.catalogue, held.x, held.y, held.variants, c.concepts.probe_size,
            c.seed, split=split,
        )  # fmt: skip

    def vocabulary(self, variant: str, split: str = "test") -> dict:
        """The vocabulary measures of ``variant`` on the probes of ``split``
        (:mod:`conceptlib.measures.vocab`) and ``part_hit``, ``part_overlap``,
        ``part_hit_per_concept`` on the digits of that split."""
        check_split(split)
        known = self._known("vocabulary", variant) if split == "test" else None
        if known is not None:
            return known
        model = self.run(variant).model
        result = vocabulary_measures(model, self.probe_set(split), self.cfg.seed)
        parts = self.digit_parts(variant, split)
        result.update(parts.summary())
        result["part_hit_per_concept"] = [float(v) for v in parts.hit]
        return result

    def likelihood(self, variant: str) -> dict[str, float]:
        """Importance-sampled NLL of the first ``eval.nll_digits`` test digits:
        ``is_nll``, its standard error ``is_nll_se`` and ``is_nll_neg_elbo``."""
        e = self.cfg.eval
        nll, neg_elbo = importance_nll(
            self.run(variant).model, torch.from_numpy(self.digits[2][: e.nll_digits]),
            samples=e.nll_samples, seed=self.cfg.seed, progress=self.progress,
        )  # fmt: skip
        se = float(nll.std(ddof=1) / np.sqrt(len(nll))) if len(nll) > 1 else 0.0
        return {
            "is_nll": float(nll.mean()),
            "is_nll_se": se,
            "is_nll_neg_elbo": float(neg_elbo.mean()),
        }

    def concept_ceiling(self) -> dict[str, float]:
        """The catalogue's ceiling on the probes: a multi-label CNN trained only to
        name the concepts on the ``concept`` variant's training images, stopped on
        the validation probes (:func:`~conceptlib.measures.classifier.
        train_multilabel`), read on the test probes as the VAE's read-out is; cached
        by config and seed (the metrics key ``classifier_ceiling`` is kept)."""
        known = self._known("vocabulary", "classifier_ceiling", "accuracy")
        if known is not None:
            return known
        comp = self.composites
        targets = multi_hot(comp.concepts, len(self.catalogue))

        def accuracies(model, probes) -> dict[str, float]:
            return {n: top_accuracy(predict(model, s.x), s.concepts)
                    for n, s in probes.sets.items()}  # fmt: skip

        def val_score(model) -> float:
            return float(np.mean(list(accuracies(model, self.val_probes).values())))

        rule = [MAX_EPOCHS, PATIENCE, MIN_DELTA, SHIFT]
        cache = self.cache_file("concept_ceiling", "pt", rule=rule)
        if cache.is_file():  # trained for this config and seed before
            clf = SmallCNN(len(self.catalogue))
            clf.load_state_dict(load_checkpoint(cache)["model"])
            return accuracies(clf.eval(), self.probes)
        clf, _ = train_multilabel(comp.x, targets, val_score, seed=self.cfg.seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        state = {"format": CHECKPOINT_FORMAT, "model": clf.state_dict()}
        atomic_torch_save(state, cache)
        return accuracies(clf, self.probes)

    @cached_property
    def digit_classifier(self):
        """The evaluation-only digit classifier (seed :data:`CLASSIFIER_SEED`) on
        ``eval.classifier_digits`` MNIST training digits, cached in the run cache."""
        e, m, seed = self.cfg.eval, self.mnist, CLASSIFIER_SEED
        split_seed = self.cfg.data.split_seed
        idx = subsample_stratified(m.y_train, e.classifier_digits, split_seed)
        key = config_hash({"source": self.cfg.data.source, "split_seed": split_seed,
                           "digits": len(idx), "epochs": e.classifier_epochs,
                           "seed": seed})  # fmt: skip
        return train_digit_classifier(
            m.x_train[idx], m.y_train[idx],
            self.cache_dir / f"digit_classifier-{key}.pt",
            seed, e.classifier_epochs, self.progress,
        )  # fmt: skip

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
        """The meaning-changing edits (:func:`~conceptlib.operators.meaning.
        meaning_edits`) of ``variant`` on the ``split`` digits, adding concept
        images cut from digits of the same split, with the operators' latent
        baseline (:func:`~conceptlib.operators.evaluate.strongest_latent`), chosen
        once per variant on the validation digits."""
        cm = self.concept_model(variant)
        if variant not in self._latents:
            self._latents[variant] = strongest_latent(cm, self)[0]
        held = self.held_concepts(split)
        concepts = (held.x, held.y - cm.catalogue.labels[0])
        return meaning_edits(
            cm, self.held_digits(split), concepts, self._latents[variant],
            self.digit_classifier, seed=self.cfg.seed,
        )  # fmt: skip

    def formulas(self, variant: str, num_probes: int = 1500) -> list:
        """A formula over concepts per concept-layer channel of ``variant``."""
        return explain_model(self.run(variant).model, self.probes, num_probes)

    def digit_parts(self, variant: str, split: str = "test"):
        """:func:`~conceptlib.measures.vocab.digit_parts` on ``test``/``val`` digits."""
        held = self.held_digits(split)
        model = self.run(variant).model
        return digit_parts(model, self.catalogue, held.x, held.y, held.variants)

    def alignment(self, variant: str = "concept", split: str = "test") -> dict:
        """Concept alignment on whole ``test`` (or ``val``) digits: ``own`` and
        ``uniform`` shares (:mod:`conceptlib.measures.explain`)."""
        held = self.held_digits(split)
        batch = self.cfg.train.eval_batch_size
        shares = concept_shares(self.concept_model(variant), held.x, batch)
        return own_digit_share(shares, held.y, self.catalogue)
