"""The whole pipeline of the paper, step by step, for one config and one seed.

:class:`Pipeline` computes each step on first use and keeps it, so a chapter can
ask for exactly the pieces it shows (``pipe.catalogue``, ``pipe.baseline``,
``pipe.concepts``, ``pipe.run("concept")``, ``pipe.metrics()``...) and the command
line can ask for everything. Trained variants come from the run cache when present.

Steps (paper section in brackets):
1. digits: MNIST, optionally a stratified subsample; the 70/30 digit split [3.2].
   The 30 % are the validation digits (:mod:`conceptlib.data.splits`): no variant
   trains on them, and nothing a variant trains on is cut from or fitted on them
   (variants, representatives and training concept images use the 70 % only).
2. ``baseline``: the VAE trained on the training split of the digits [3.1].
3. representatives: 10 latent clusters of all training digits, decoded, matched to
   digits [3.5 step 1, Figure 3].
4. concepts: ``per_concept`` images per concept, p = ``p_train`` [3.3, 3.5].
5. the augmented set: digits + concepts, each split 70/30 and joined [3.5].
6. ``augmented``, ``concept_paper`` (the paper's concept loss) and ``concept``
   (this project's: composites of several concepts, concept loss on the decoding
   of ``mu``) [3.4].
7. measures on three splits, the vocabulary probes, and the four clusterings of
   section 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlib.config import VARIANTS, ExperimentConfig, config_hash, variant_config
from conceptlib.data.catalogue import (
    Catalogue,
    Composites,
    ConceptSet,
    VariantModel,
    compose,
    fit_variants,
    load_catalogue,
    make_concepts,
    shift_images,
    stratified_split,
)
from conceptlib.data.mnist import IMAGE_SHAPE, MNIST, NUM_CLASSES, load_mnist
from conceptlib.data.splits import HELD_SPLITS, HeldDigits, check_split
from conceptlib.measures.cluster import (
    Clustering,
    decode_centres,
    encode_features,
    fit_kmeans,
    representative_images,
)
from conceptlib.measures.likelihood import evaluate
from conceptlib.train.loop import Run, get_or_train
from conceptlib.train.runtime import resolve_device, resolve_precision

SPLITS = ("val", "test_digits", "test_concepts")
#: Every split :meth:`Pipeline.evaluate` measures: :data:`SPLITS` and the
#: validation digits and the concept images cut from them.
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


def subsample_stratified(y: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified subsample of ``num`` items (all if fewer)."""
    if num >= len(y):
        return np.arange(len(y))
    keep, _ = stratified_split(y, 1.0 - num / len(y), seed)
    return keep


@dataclass(frozen=True)
class ImageSet:
    """Images and labels as tensors, ready for training and evaluation.

    Attributes:
        x: ``(N, 28, 28)`` uint8; y: ``(N,)`` int64 (0-9 digits, 10+ concepts).
        parts: None, or ``(N, P, 28, 28)`` uint8 ink of each image's concept parts
            and ``(N, P)`` their concept indices (-1: none; digits have none).
    """

    x: torch.Tensor
    y: torch.Tensor
    parts: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def of(cls, *parts: tuple[np.ndarray, np.ndarray]) -> ImageSet:
        """Concatenate ``(x, y)`` numpy pairs."""
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts]).astype(np.int64)
        return cls(torch.from_numpy(x), torch.from_numpy(y))

    @classmethod
    def with_composites(
        cls, digits: tuple[np.ndarray, np.ndarray], comp: Composites, y: np.ndarray
    ) -> ImageSet:
        """Digits followed by composite concept images (labelled by part 0)."""
        base = cls.of(digits, (comp.x, y))
        n, p = len(digits[1]), comp.parts.shape[1]
        parts = np.concatenate([np.zeros((n, p, *IMAGE_SHAPE), np.uint8), comp.parts])
        which = np.concatenate([np.full((n, p), -1, np.int64), comp.concepts])
        return cls(base.x, base.y, (torch.from_numpy(parts), torch.from_numpy(which)))

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        """Number of digit and concept images."""
        num_digits = int((self.y < 10).sum())
        return {"digits": num_digits, "concepts": len(self) - num_digits}


#: The seed of the evaluation-only digit classifier (:attr:`Pipeline.digit_classifier`).
CLASSIFIER_SEED = 0


class Pipeline:
    """One config, one seed: every step of the paper, computed on demand.

    Args:
        cfg: the experiment config (its ``seed`` is used throughout).
        device: ``auto``, ``cpu``, ``cuda`` or a :class:`torch.device`.
        cache_dir: the run cache (trained variants).
        progress: show progress bars.
        mnist: an already loaded :class:`MNIST` (else ``cfg.data.source`` is read).
        recipe: ``section.key=value`` overrides of ``concept_paper``'s config,
            applied after :data:`~conceptlib.config.PAPER_RECIPE` (the sweep's
            variations of the paper's recipe); the run cache keys the result.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        device: str | torch.device = "auto",
        cache_dir: str | Path = "runs",
        progress: bool = True,
        mnist: MNIST | None = None,
        recipe: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.device = (
            device if isinstance(device, torch.device) else resolve_device(device)
        )
        self.cfg = resolve_precision(cfg, self.device)  # train.precision=auto
        self.cache_dir = Path(cache_dir)
        self.progress = progress
        self._mnist = mnist
        self.recipe = tuple(recipe)
        if self.recipe:
            self.variant_config("concept_paper")  # a bad override stops here
        self._runs: dict[str, Run] = {}
        self._recorded: dict[str, Any] = {}

    def use_recorded(self, measures: dict[str, Any]) -> None:
        """Answer :meth:`evaluate`, :meth:`vocabulary`, :meth:`concept_ceiling` and
        :meth:`edits` from one seed's recorded measures (an entry of
        ``metrics.json``'s ``per_seed``, see
        :func:`conceptlib.experiment.reproduce.recorded_seed`) where they hold the
        answer,
        instead of measuring again. Only measures of this very config, seed and
        code should be given: the pipeline cannot check them."""
        self._recorded = measures

    def _known(self, *path: str) -> Any:
        """A copy of the recorded measure at ``path``, or None."""
        import copy

        node: Any = self._recorded
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return copy.deepcopy(node)

    # -- data ---------------------------------------------------------------------
    @cached_property
    def mnist(self) -> MNIST:
        """The full MNIST as loaded from ``cfg.data.source``."""
        return (
            self._mnist if self._mnist is not None else load_mnist(self.cfg.data.source)
        )

    @cached_property
    def digits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``x_train, y_train, x_test, y_test`` after the configured subsampling."""
        d, m = self.cfg.data, self.mnist
        tr = subsample_stratified(m.y_train, d.num_train_digits, d.split_seed)
        te = subsample_stratified(m.y_test, d.num_test_digits, d.split_seed)
        return m.x_train[tr], m.y_train[tr], m.x_test[te], m.y_test[te]

    @cached_property
    def digit_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The stratified 70/30 split of the training digits (shared by variants)."""
        _, y, _, _ = self.digits
        return stratified_split(y, self.cfg.data.val_fraction, self.cfg.data.split_seed)

    @cached_property
    def train_digits(self) -> HeldDigits:
        """The training split's digits (70 %): the only digits variants learn from."""
        x, y, _, _ = self.digits
        idx = self.digit_split[0]
        return HeldDigits(x[idx], y[idx], self.train_variants[idx], "train")

    @cached_property
    def val_digits(self) -> HeldDigits:
        """The validation digits: the 30 % of the digit split, held out of training
        (see :mod:`conceptlib.data.splits`); every choice is made on them."""
        x, y, _, _ = self.digits
        idx = self.digit_split[1]
        return HeldDigits(x[idx], y[idx], self.train_variants[idx], "val")

    @cached_property
    def test_digits(self) -> HeldDigits:
        """The test digits, read once, for the reported numbers."""
        _, _, x, y = self.digits
        return HeldDigits(x, y, self.test_variants, "test")

    def held_digits(self, split: str) -> HeldDigits:
        """The digits of ``split``: ``train`` (70 %), ``val`` (30 %) or ``test``."""
        check_split(split, ("train", *HELD_SPLITS))
        return getattr(self, f"{split}_digits")

    @cached_property
    def catalogue(self) -> Catalogue:
        """The concept catalogue named by ``cfg.concepts.catalogue``."""
        return load_catalogue(self.cfg.concepts.catalogue)

    @cached_property
    def variants(self) -> VariantModel:
        """The 2-means variants (e.g. open and closed 4), fitted on the training
        split's digits (the validation digits are only assigned to them)."""
        x, y, _, _ = self.digits
        idx = self.digit_split[0]
        return fit_variants(
            x[idx], y[idx], self.catalogue, seed=self.cfg.data.split_seed
        )

    @cached_property
    def train_variants(self) -> np.ndarray:
        """``(N,)`` the variant of each MNIST training digit of the run (both
        splits; see :attr:`variants`)."""
        x, y, _, _ = self.digits
        return self.variants.assign(x, y)

    @cached_property
    def test_variants(self) -> np.ndarray:
        """``(N,)`` the variant of each test digit (see :attr:`variants`)."""
        _, _, x, y = self.digits
        return self.variants.assign(x, y)

    # -- baseline and representatives ----------------------------------------------
    @cached_property
    def baseline(self) -> Run:
        """The baseline VAE, trained on the training split of the digits only."""
        return self.run("baseline")

    @cached_property
    def representatives(self) -> tuple[np.ndarray, Clustering]:
        """Section 3.5 step 1: ``(10, 28, 28)`` uint8 decoded centre per digit,
        clustered from the training split's digits."""
        train = self.train_digits
        c = self.cfg
        return representative_images(
            self.baseline.model,
            torch.from_numpy(train.x),
            train.y,
            num_clusters=c.concepts.num_clusters,
            seed=c.cluster.seed,
            n_init=c.cluster.n_init,
        )

    # -- concepts ------------------------------------------------------------------
    @cached_property
    def concepts(self) -> ConceptSet:
        """The training concept images (section 3.5), cut from the training
        split's digits only (never from the validation digits)."""
        train = self.train_digits
        rng = np.random.default_rng([self.cfg.seed, 1])
        return make_concepts(
            self.catalogue,
            self.cfg.concepts.per_concept,
            train.x,
            train.y,
            train.variants,
            rng,
            centres=self.representatives[0],
            p_train=self.cfg.concepts.p_train,
        )

    def _cut_held(self, digits: HeldDigits, stream: int) -> ConceptSet:
        """Held-out concept images cut from ``digits`` only (no centres), drawn
        from the seed's generator ``stream``."""
        rng = np.random.default_rng([self.cfg.seed, stream])
        per_concept = self.cfg.concepts.test_per_concept
        return make_concepts(
            self.catalogue, per_concept, digits.x, digits.y, digits.variants, rng
        )

    @cached_property
    def test_concepts(self) -> ConceptSet:
        """Held-out concept images, cut from the test digits only (no centres)."""
        return self._cut_held(self.test_digits, 2)

    @cached_property
    def val_concepts(self) -> ConceptSet:
        """Held-out concept images cut from the validation digits only, as
        :attr:`test_concepts` are from the test digits."""
        return self._cut_held(self.val_digits, 12)

    def held_concepts(self, split: str) -> ConceptSet:
        """Held-out concept images cut from the ``val`` or ``test`` digits."""
        return {"val": self.val_concepts, "test": self.test_concepts}[
            check_split(split)
        ]

    @cached_property
    def concept_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The stratified 70/30 split of the concept images."""
        return stratified_split(
            self.concepts.y, self.cfg.data.val_fraction, self.cfg.data.split_seed
        )

    @cached_property
    def composites(self) -> Composites:
        """The ``concept`` variant's training concept images, some made composite.

        Each training concept image is first shifted by a random offset of up to
        ``concepts.train_shift`` px per axis (none by default), then becomes, with
        probability ``concepts.composite_fraction``, a composite: 1 to
        ``max_parts - 1`` further training concept images of other concepts
        overlaid on it (pixel maximum). Unchanged images keep one part: themselves.
        """
        c = self.cfg.concepts
        idx = self.concept_split[0]
        x = self.concepts.x[idx]
        concept = self.concepts.y[idx] - self.catalogue.labels[0]
        rng = np.random.default_rng([self.cfg.seed, 4])
        if c.train_shift:
            x, _ = shift_images(
                x, np.random.default_rng([self.cfg.seed, 5]), c.train_shift
            )
        composite = rng.random(len(x)) < c.composite_fraction
        extra = rng.integers(1, c.max_parts, size=len(x))  # 1 .. max_parts - 1
        num_parts = np.where(composite, 1 + extra, 1)
        return compose(x, concept, num_parts, rng, max_parts=c.max_parts)

    def dataset(self, variant: str, split: str) -> ImageSet:
        """The images a variant trains on (``train``) or is evaluated on.

        Args:
            variant: ``baseline`` (digits only), ``augmented``, ``concept_paper``
                (digits + concepts) or ``concept`` (digits + concepts, a share of
                them composites, in ``train`` only).
            split: ``train``, ``val`` (the variant's own 30 %: validation digits
                and, but for ``baseline``, the 30 % of the training concept
                images), ``val_digits`` (the validation digits alone),
                ``val_concepts`` (concept images cut from the validation digits),
                ``test_digits`` or ``test_concepts``.
        """
        x, y, x_test, y_test = self.digits
        if split == "test_digits":
            return ImageSet.of((x_test, y_test))
        if split == "test_concepts":
            return ImageSet.of((self.test_concepts.x, self.test_concepts.y))
        if split == "val_digits":
            return ImageSet.of((self.val_digits.x, self.val_digits.y))
        if split == "val_concepts":
            return ImageSet.of((self.val_concepts.x, self.val_concepts.y))
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}")
        which = {"train": 0, "val": 1}[split]
        d_idx = self.digit_split[which]
        if variant == "concept" and split == "train":
            labels = self.concepts.y[self.concept_split[0]]
            return ImageSet.with_composites(
                (x[d_idx], y[d_idx]), self.composites, labels
            )
        parts = [(x[d_idx], y[d_idx])]
        if variant != "baseline":
            c_idx = self.concept_split[which]
            parts.append((self.concepts.x[c_idx], self.concepts.y[c_idx]))
        return ImageSet.of(*parts)

    # -- training ------------------------------------------------------------------
    def variant_config(self, variant: str) -> ExperimentConfig:
        """The config ``variant`` trains with
        (:func:`~conceptlib.config.variant_config`, then :attr:`recipe` for
        ``concept_paper``)."""
        return variant_config(self.cfg, variant, self.recipe)

    def run(self, variant: str) -> Run:
        """The trained ``variant`` (from the run cache, or trained now)."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}")
        if variant not in self._runs:
            train = self.dataset(variant, "train")
            self._runs[variant] = get_or_train(
                self.variant_config(variant),
                variant,
                train.x,
                train.y,
                len(self.catalogue),
                cache_dir=self.cache_dir,
                device=self.device,
                progress=self.progress,
                parts=train.parts,
            )
        return self._runs[variant]

    def training_plan(self) -> dict[str, int]:
        """Image-steps (training images x epochs) of each variant not yet in the run
        cache, from the config alone: no model is trained or loaded."""
        from conceptlib.train.loop import run_folder

        c = self.cfg
        keep = 1 - c.data.val_fraction
        digits = min(c.data.num_train_digits, len(self.mnist.y_train)) * keep
        concepts = c.concepts.per_concept * len(self.catalogue) * keep
        plan = {}
        for v in VARIANTS:
            folder = run_folder(self.cache_dir, self.variant_config(v), v, self.device)
            if not (folder / "model.pt").exists():
                images = digits + (0 if v == "baseline" else concepts)
                plan[v] = round(images * c.train.num_epochs)
        return plan

    # -- measures ------------------------------------------------------------------
    def evaluate(self, variant: str, split: str) -> dict[str, float]:
        """Every measure of DESIGN.md for ``variant`` on ``split`` (one of
        :data:`EVAL_SPLITS`)."""
        known = self._known("variants", variant, split)
        if known is not None:
            return known
        data = self.dataset(variant, split)
        return evaluate(
            self.run(variant).model,
            data.x,
            data.y,
            batch_size=self.cfg.train.eval_batch_size,
            seed=self.cfg.seed,
        )

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{variant: {split: {measure: value}}}`` for all variants and splits."""
        return {v: {s: self.evaluate(v, s) for s in SPLITS} for v in VARIANTS}

    @cached_property
    def probes(self):
        """The vocabulary probes cut from the test digits
        (:func:`~conceptlib.measures.vocab.make_probes`)."""
        return self._make_probes("test")

    @cached_property
    def val_probes(self):
        """The vocabulary probes cut from the validation digits, exactly as
        :attr:`probes` are from the test digits (same sizes and seed)."""
        return self._make_probes("val")

    def probe_set(self, split: str = "test"):
        """The vocabulary probes cut from the ``val`` or ``test`` digits."""
        return self.val_probes if check_split(split) == "val" else self.probes

    def _make_probes(self, split: str):
        from conceptlib.measures.vocab import make_probes

        held = self.held_digits(split)
        return make_probes(
            self.catalogue,
            held.x,
            held.y,
            held.variants,
            self.cfg.concepts.probe_size,
            self.cfg.seed,
            split=split,
        )

    def vocabulary(self, variant: str, split: str = "test") -> dict:
        """The vocabulary measures of ``variant`` (see :mod:`conceptlib.measures.vocab`)
        on the probes of ``split`` (``val`` or ``test``).

        The probes' measures, plus how the maps split the real digits of the same
        split into their parts (``part_hit``, ``part_overlap``,
        ``part_hit_per_concept``).
        """
        from conceptlib.measures.vocab import vocabulary_measures

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
        """Importance-sampled NLL of the first ``eval.nll_digits`` test digits.

        ``is_nll``: mean of :func:`~conceptlib.measures.likelihood.importance_nll` with
        ``k = eval.nll_samples``; ``is_nll_se``: its standard error over the
        digits; ``is_nll_neg_elbo``: the -ELBO of the same digits averaged over
        the same k samples, so that ``is_nll_neg_elbo - is_nll`` is the gap the
        bound leaves (nats per image).
        """
        from conceptlib.measures.likelihood import importance_nll

        e = self.cfg.eval
        _, _, x, _ = self.digits
        nll, neg_elbo = importance_nll(
            self.run(variant).model,
            torch.from_numpy(x[: e.nll_digits]),
            samples=e.nll_samples,
            seed=self.cfg.seed,
            progress=self.progress,
        )
        return {
            "is_nll": float(nll.mean()),
            "is_nll_se": float(nll.std(ddof=1) / np.sqrt(len(nll)))
            if len(nll) > 1
            else 0.0,
            "is_nll_neg_elbo": float(neg_elbo.mean()),
        }

    def concept_ceiling(self) -> dict[str, float]:
        """A reference: a supervised CNN on the same concept images.

        A K-way :class:`~conceptlib.measures.classifier.SmallCNN` trained for
        :data:`~conceptlib.measures.classifier.NUM_EPOCHS` epochs (no validation stop)
        on the
        training concept images of ``augmented`` (the paper's, isolated), tested
        on the isolated, jitter and shift probes. It is neither trained to
        convergence nor shown shifts or composites, so it is a reference, not a
        ceiling: a concept model can exceed it. (The name and the metrics key
        ``classifier_ceiling`` are kept for outside code.)
        """
        from conceptlib.measures.classifier import (
            predict,
            top_accuracy,
            train_classifier,
        )

        known = self._known("vocabulary", "classifier_ceiling", "accuracy")
        if known is not None:
            return known
        train = self.dataset("augmented", "train")
        sel = (train.y >= self.catalogue.labels[0]).numpy()
        x = train.x.numpy()[sel]
        y = train.y.numpy()[sel] - self.catalogue.labels[0]
        clf = train_classifier(x, y, len(self.catalogue), seed=self.cfg.seed)
        return {
            name: top_accuracy(predict(clf, s.x), s.concepts)
            for name, s in self.probes.sets.items()
            if name != "pairs"  # one label per image: no ceiling for pairs
        }

    @cached_property
    def digit_classifier(self):
        """The evaluation-only digit classifier
        (:func:`~conceptlib.operators.evaluate.digit_classifier`), trained on
        ``eval.classifier_digits`` MNIST training digits, cached in the run cache.

        Its seed is :data:`CLASSIFIER_SEED` whatever the models' seed, so that the
        models of every seed are read by the same instrument."""
        from conceptlib.operators.evaluate import digit_classifier

        e, m, seed = self.cfg.eval, self.mnist, CLASSIFIER_SEED
        split_seed = self.cfg.data.split_seed
        idx = subsample_stratified(m.y_train, e.classifier_digits, split_seed)
        key = config_hash({"source": self.cfg.data.source, "split_seed": split_seed,
                           "digits": len(idx), "epochs": e.classifier_epochs,
                           "seed": seed})  # fmt: skip
        name = f"digit_classifier-{key}.pt"
        return digit_classifier(
            m.x_train[idx], m.y_train[idx], self.cache_dir / name, seed,
            e.classifier_epochs, self.progress,
        )  # fmt: skip

    @cached_property
    def classifier_accuracy(self) -> float:
        """Accuracy of :attr:`digit_classifier` on all MNIST test digits."""
        from conceptlib.measures.classifier import predict

        probs = predict(self.digit_classifier, self.mnist.x_test)
        return float((probs.argmax(1) == self.mnist.y_test).mean())

    def concept_model(self, variant: str = "concept"):
        """``variant``'s trained run as a
        :class:`~conceptlib.measures.explain.ConceptModel`
        (the model with its config, catalogue and run folder)."""
        from conceptlib.measures.explain import ConceptModel

        run = self.run(variant)
        return ConceptModel(run.model, self.cfg, self.catalogue, run.path)

    def edits(self, variant: str = "concept") -> dict[str, Any]:
        """The operators measured on ``variant``
        (:func:`~conceptlib.operators.evaluate.measure_operators`)."""
        from conceptlib.operators.evaluate import measure_operators

        known = self._known("operators", variant)
        if known is not None:
            return known
        return measure_operators(self.concept_model(variant), self)

    def formulas(self, variant: str, num_probes: int = 1500) -> list:
        """A logical formula over concepts for every concept-layer channel of
        ``variant`` (:func:`conceptlib.measures.formulas.explain_model`)."""
        from conceptlib.measures.formulas import explain_model

        return explain_model(self.run(variant).model, self.probes, num_probes)

    def digit_parts(self, variant: str, split: str = "test"):
        """:func:`~conceptlib.measures.vocab.digit_parts` of ``variant`` on the ``test``
        (or ``val``) digits."""
        from conceptlib.measures.vocab import digit_parts

        held = self.held_digits(split)
        return digit_parts(
            self.run(variant).model,
            self.catalogue,
            held.x,
            held.y,
            held.variants,
        )

    def alignment(
        self, variant: str = "concept", split: str = "test"
    ) -> dict[str, float]:
        """Concept alignment on whole ``test`` (or ``val``) digits (see
        :mod:`conceptlib.measures.explain`).

        ``own``: mean share of a test digit's concept energy on concepts cut from
        its own class, for ``variant``; ``uniform``: the same for energy spread
        evenly over the concepts.
        """
        from conceptlib.measures.explain import concept_shares, own_digit_share

        held = self.held_digits(split)
        shares = concept_shares(
            self.concept_model(variant), held.x, self.cfg.train.eval_batch_size
        )
        return own_digit_share(shares, held.y, self.catalogue)

    def _subsample(self, num: int) -> np.ndarray:
        cap = self.cfg.cluster.max_points
        if num <= cap:
            return np.arange(num)
        rng = np.random.default_rng([self.cfg.cluster.seed, self.cfg.seed])
        return np.sort(rng.choice(num, cap, replace=False))

    @cached_property
    def clusterings(self) -> dict[str, Clustering]:
        """The four clusterings of section 4 (on seeded subsamples of the train split).

        Clusterings 1 to 3 use ``concept_paper``, the paper's method; all four run
        on the training images of the ``augmented`` variant (isolated concepts, as
        in the paper), which the concept variants share or (composites) build on.
        """
        c = self.cfg.cluster
        k = len(self.catalogue)
        train = self.dataset("augmented", "train")
        digit_idx = np.flatnonzero(train.y.numpy() < 10)
        concept_idx = np.flatnonzero(train.y.numpy() >= 10)
        digit_idx = digit_idx[self._subsample(len(digit_idx))]
        concept_idx = concept_idx[self._subsample(len(concept_idx))]
        jobs = {
            "digits_latent": ("concept_paper", digit_idx, "latent", NUM_CLASSES),
            "concepts_latent": ("concept_paper", concept_idx, "latent", k),
            "layer3_with_concept_loss": ("concept_paper", concept_idx, "hidden", k),
            "layer3_without_concept_loss": ("augmented", concept_idx, "hidden", k),
        }
        out = {}
        for name, (variant, idx, what, num) in jobs.items():
            feats = encode_features(self.run(variant).model, train.x[idx], what)
            out[name] = fit_kmeans(
                feats, train.y.numpy()[idx], num, seed=c.seed, n_init=c.n_init
            )
        return out

    def decoded_centres(self, name: str) -> tuple[np.ndarray, list[int]]:
        """Pictures of a clustering's centres, ordered by matched label.

        Latent clusterings are decoded to ``(k, 28, 28)`` images; concept-layer
        clusterings are shown as the maximum over the concept channels.
        """
        clustering = self.clusterings[name]
        centres, labels = clustering.centres_by_label()
        if name.endswith("latent"):
            images, _ = decode_centres(self.run("concept_paper").model, centres)
            return images, labels
        k = len(self.catalogue)
        size = self.run("concept_paper").model.concept_size
        maps = centres.reshape(len(centres), -1, size, size)[:, :k]
        return maps.max(axis=1), labels
