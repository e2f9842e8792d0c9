"""The measures a pipeline takes of its variants: functions of a
:class:`~conceptlib.experiment.pipeline.Pipeline` (``pipe``), which its methods
of the same names call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from conceptlib.config import config_hash, to_dict
from conceptlib.data.mnist import NUM_CLASSES
from conceptlib.experiment.data import subsample_stratified
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
from conceptlib.measures.cluster import (
    Clustering,
    decode_centres,
    encode_features,
    fit_kmeans,
)
from conceptlib.measures.explain import concept_shares, own_digit_share
from conceptlib.measures.likelihood import evaluate, importance_nll
from conceptlib.measures.probes import make_probes
from conceptlib.measures.vocab import digit_parts, vocabulary_measures
from conceptlib.model.readout import ConceptModel
from conceptlib.operators.evaluate import digit_classifier, strongest_latent
from conceptlib.operators.meaning import meaning_edits

if TYPE_CHECKING:
    from conceptlib.experiment.pipeline import Pipeline

#: The seed of the evaluation-only digit classifier, whatever the models' seed,
#: so that the models of every seed are read by the same instrument.
CLASSIFIER_SEED = 0
#: The variants of section 4's clusterings: with and without a concept loss.
WITH_LOSS, WITHOUT_LOSS = "concept_paper", "augmented"


def evaluate_split(pipe: Pipeline, variant: str, split: str) -> dict[str, float]:
    """Every measure of DESIGN.md for ``variant`` on ``split``."""
    data = pipe.dataset(variant, split)
    model = pipe.run(variant).model
    batch = pipe.cfg.train.eval_batch_size
    return evaluate(model, data.x, data.y, batch_size=batch, seed=pipe.cfg.seed)


def probes(pipe: Pipeline, split: str):
    """The vocabulary probes cut from the ``split`` digits."""
    held, c = pipe.held_digits(split), pipe.cfg
    return make_probes(
        pipe.catalogue, held.x, held.y, held.variants, c.concepts.probe_size, c.seed,
        split=split,
    )  # fmt: skip


def vocabulary(pipe: Pipeline, variant: str, split: str) -> dict:
    """The probes' vocabulary measures plus how the maps split the real digits
    of the same split into their parts."""
    model = pipe.run(variant).model
    result = vocabulary_measures(model, pipe.probe_set(split), pipe.cfg.seed)
    parts = pipe.digit_parts(variant, split)
    result.update(parts.summary())
    result["part_hit_per_concept"] = [float(v) for v in parts.hit]
    return result


def likelihood(pipe: Pipeline, variant: str) -> dict[str, float]:
    """Importance-sampled NLL of the first ``eval.nll_digits`` test digits."""
    e = pipe.cfg.eval
    _, _, x, _ = pipe.digits
    nll, neg_elbo = importance_nll(
        pipe.run(variant).model,
        torch.from_numpy(x[: e.nll_digits]),
        samples=e.nll_samples,
        seed=pipe.cfg.seed,
        progress=pipe.progress,
    )
    se = float(nll.std(ddof=1) / np.sqrt(len(nll))) if len(nll) > 1 else 0.0
    return {
        "is_nll": float(nll.mean()),
        "is_nll_se": se,
        "is_nll_neg_elbo": float(neg_elbo.mean()),
    }


def concept_ceiling(pipe: Pipeline) -> dict[str, float]:
    """The catalogue's ceiling on the probes: a multi-label CNN trained only to
    name the concepts on the ``concept`` variant's training images, stopped on the
    validation probes (:func:`~conceptlib.measures.classifier.train_multilabel`),
    read on the test probes as the VAE's read-out is; cached by config and seed."""
    comp = pipe.composites
    targets = multi_hot(comp.concepts, len(pipe.catalogue))

    def accuracies(model, probes) -> dict[str, float]:
        return {n: top_accuracy(predict(model, s.x), s.concepts)
                for n, s in probes.sets.items()}  # fmt: skip

    def val_score(model) -> float:
        return float(np.mean(list(accuracies(model, pipe.val_probes).values())))

    payload = {k: v for k, v in to_dict(pipe.cfg).items() if k != "eval"}
    key = config_hash({**payload, "rule": [MAX_EPOCHS, PATIENCE, MIN_DELTA, SHIFT]})
    cache = pipe.cache_dir / f"concept_ceiling-{key}.pt"
    if cache.is_file():  # trained for this config and seed before
        clf = SmallCNN(len(pipe.catalogue))
        clf.load_state_dict(load_checkpoint(cache)["model"])
        return accuracies(clf.eval(), pipe.probes)
    clf, _ = train_multilabel(comp.x, targets, val_score, seed=pipe.cfg.seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "model": clf.state_dict()}, cache)
    return accuracies(clf, pipe.probes)


def train_digit_classifier(pipe: Pipeline):
    """The evaluation-only digit classifier on ``eval.classifier_digits`` MNIST
    training digits, cached in the run cache."""
    e, m, seed = pipe.cfg.eval, pipe.mnist, CLASSIFIER_SEED
    split_seed = pipe.cfg.data.split_seed
    idx = subsample_stratified(m.y_train, e.classifier_digits, split_seed)
    key = config_hash({"source": pipe.cfg.data.source, "split_seed": split_seed,
                       "digits": len(idx), "epochs": e.classifier_epochs,
                       "seed": seed})  # fmt: skip
    return digit_classifier(
        m.x_train[idx], m.y_train[idx], pipe.cache_dir / f"digit_classifier-{key}.pt",
        seed, e.classifier_epochs, pipe.progress,
    )  # fmt: skip


def parts_of_digits(pipe: Pipeline, variant: str, split: str):
    """How ``variant``'s maps split the ``split`` digits into their parts."""
    held = pipe.held_digits(split)
    model = pipe.run(variant).model
    return digit_parts(model, pipe.catalogue, held.x, held.y, held.variants)


def alignment(pipe: Pipeline, variant: str, split: str) -> dict[str, float]:
    """Concept alignment on whole ``split`` digits: ``own`` and ``uniform``."""
    held = pipe.held_digits(split)
    batch = pipe.cfg.train.eval_batch_size
    shares = concept_shares(pipe.concept_model(variant), held.x, batch)
    return own_digit_share(shares, held.y, pipe.catalogue)


def clusterings(pipe: Pipeline) -> dict[str, Clustering]:
    """The four clusterings of section 4, on seeded subsamples of the training
    images of ``augmented`` (isolated concepts, as in the paper)."""
    c, k = pipe.cfg.cluster, len(pipe.catalogue)
    train = pipe.dataset(WITHOUT_LOSS, "train")
    digit_idx = np.flatnonzero(train.y.numpy() < 10)
    concept_idx = np.flatnonzero(train.y.numpy() >= 10)
    digit_idx = digit_idx[pipe.subsample(len(digit_idx))]
    concept_idx = concept_idx[pipe.subsample(len(concept_idx))]
    jobs = {
        "digits_latent": (WITH_LOSS, digit_idx, "latent", NUM_CLASSES),
        "concepts_latent": (WITH_LOSS, concept_idx, "latent", k),
        "layer3_with_concept_loss": (WITH_LOSS, concept_idx, "hidden", k),
        "layer3_without_concept_loss": (WITHOUT_LOSS, concept_idx, "hidden", k),
    }
    out = {}
    for name, (variant, idx, what, num) in jobs.items():
        feats = encode_features(pipe.run(variant).model, train.x[idx], what)
        out[name] = fit_kmeans(
            feats, train.y.numpy()[idx], num, seed=c.seed, n_init=c.n_init
        )
    return out


def decoded_centres(pipe: Pipeline, name: str) -> tuple[np.ndarray, list[int]]:
    """Pictures of a clustering's centres, ordered by matched label: latent
    centres decoded, concept-layer centres as the maximum over concept channels."""
    centres, labels = pipe.clusterings[name].centres_by_label()
    model = pipe.run(WITH_LOSS).model
    if name.endswith("latent"):
        images, _ = decode_centres(model, centres)
        return images, labels
    maps = centres.reshape(len(centres), -1, model.concept_size, model.concept_size)
    return maps[:, : len(pipe.catalogue)].max(axis=1), labels


def latent_baseline(pipe: Pipeline, cm: ConceptModel):
    """The operators' latent baseline of ``cm`` (:func:`~conceptlib.operators.
    evaluate.strongest_latent`), chosen on the validation digits."""
    return strongest_latent(cm, pipe)[0]


def meaning(pipe: Pipeline, cm: ConceptModel, split: str, latent=None) -> dict:
    """The meaning-changing edits (:func:`~conceptlib.operators.meaning.
    meaning_edits`) of ``cm`` on the ``split`` digits of ``pipe``, adding concept
    images cut from digits of the same split, with ``latent`` (default: the
    operators' :func:`latent_baseline`)."""
    latent = latent if latent is not None else latent_baseline(pipe, cm)
    held = pipe.held_concepts(split)
    concepts = (held.x, held.y - cm.catalogue.labels[0])
    return meaning_edits(
        cm, pipe.held_digits(split), concepts, latent, pipe.digit_classifier,
        seed=pipe.cfg.seed,
    )  # fmt: skip
