"""Experiment configuration: frozen dataclasses, YAML profiles, overrides and hashing.

One schema, three sizes (``smoke``, ``quick``, ``paper``). Each YAML profile in
``conceptlib/configs/`` maps one-to-one onto :class:`ExperimentConfig`; unknown keys
raise :class:`~conceptlib.errors.ConceptlibError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from conceptlib.errors import ConceptlibError
from conceptlib.model import variants

#: Raise whenever training semantics change, so cached runs are not reused (3:
#: variants, representatives, training concept images from the 70 % split only).
RUN_FORMAT = 3
PROFILES = ("smoke", "quick", "paper")
#: The variants (:mod:`conceptlib.model.variants`), and those with a concept loss.
VARIANTS = variants.NAMES
CONCEPT_VARIANTS = variants.CONCEPT_NAMES
PAPER_RECIPE = variants.PAPER_RECIPE
#: Labels 0-9 are digits; concept k has label FIRST_CONCEPT_LABEL + k.
FIRST_CONCEPT_LABEL = 10
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class DataConfig:
    """Which digits to use. ``source`` is ``embedded`` or a path (IDX folder, npz)."""

    source: str = "embedded"
    num_train_digits: int = 60000  # subsample of the 60,000 training digits
    num_test_digits: int = 10000  # subsample of the 10,000 test digits
    val_fraction: float = 0.3  # the paper's 70/30 split, stratified
    split_seed: int = 0


@dataclass(frozen=True)
class ConceptConfig:
    """How concept images are generated (paper sections 3.3 and 3.5)."""

    catalogue: str = "mnist"  # a packaged catalogue name or a CSV path
    per_concept: int = 3000  # training concept images per concept
    test_per_concept: int = 200  # held-out concept images cut from test digits
    p_train: float = 0.8  # probability of cutting from a training digit (else centre)
    num_clusters: int = 10  # latent clusters for the representative images
    # concept variant: this fraction of its training concept images gets 1 to
    # max_parts - 1 other concepts overlaid (pixel max); targets: each part's ink
    composite_fraction: float = 0.5
    max_parts: int = 3
    # concept variant: its training concept images shift by a random offset in
    # [-train_shift, train_shift] px per axis, before compositing
    train_shift: int = 0
    probe_size: int = 10000  # images per vocabulary probe (cut from test digits)


@dataclass(frozen=True)
class ModelConfig:
    """The fully convolutional VAE (paper section 3.1, Figure 1)."""

    latent_channels: int = 4  # latent image is (latent_channels, 7, 7)
    enc_channels: tuple[int, ...] = (16, 32, 64, 64)  # encoder layers 1-4
    dec_channels: tuple[int, ...] = (64, 32, 32, 16)  # decoder layers 1-4
    concept_layer: int = 3  # 1-based index of the decoder layer with the concepts
    bottleneck_kernel: int = 3  # kernel of encoder layer 4 and decoder layer 1 (7x7)
    concept_activation: str = "sigmoid"  # on the concept channels: sigmoid | relu
    concept_bias_init: float = -4.0  # initial bias of the concept channels (sparse)


@dataclass(frozen=True)
class LossConfig:
    """Reconstruction, KL and concept loss weights (paper sections 3.1 and 3.4)."""

    recon: str = "bce"  # bce (section 3.1) | mse (section 3.4)
    beta: float = 1.0  # weight of the KL term
    concept_weight: float = 1.0  # lambda: weight of the concept loss (concept variant)
    concept_target: str = "exclusive"  # other concept channels pushed to zero
    concept_loss: str = "bce"  # bce (on the concept logits) | mse (paper 3.4)
    # the decoding the concept loss reads: z (the sample), mu (the mean, as
    # concept_maps reads it), or mu_detached (no concept gradient into the encoder)
    concept_decode: str = "mu"
    concept_warmup_epochs: float = 0.0  # concept weight rises linearly from 0
    kl_warmup_epochs: float = 0.0  # beta rises linearly from 0 over these epochs
    union_weight: float = 0.0  # union term (concept variants): decoded vs pixel union


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    num_epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    # auto: bf16 autocast with channels_last where the hardware computes bf16
    # natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX), fp32 elsewhere;
    # resolved by conceptlib.train.runtime.resolve_precision before a run is keyed
    precision: str = "auto"  # auto | fp32 | bf16 (autocast)
    channels_last: bool = False
    eval_batch_size: int = 1000


@dataclass(frozen=True)
class ClusterConfig:
    """k-means settings for the four clusterings of section 4."""

    n_init: int = 4
    max_points: int = 5000  # subsample per clustering (layer-3 maps are large)
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Measures that only read trained models (not part of a run's key)."""

    nll_samples: int = 1000  # k of the importance-sampled test-digit NLL
    nll_digits: int = 1000  # the first test digits it is estimated on (at most all)
    num_edits: int = 1000  # test digits edited by each operator (at most all)
    edits_per_digit: int = 100  # digits composed from concepts, per digit class
    classifier_digits: int = 60000  # MNIST training digits of the digit classifier
    classifier_epochs: int = 6  # its epochs


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run; its hash keys the run cache."""

    profile: str = "quick"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


_SECTIONS = [f.name for f in fields(ExperimentConfig)]
_CHOICES = {
    ("model", "concept_activation"): ("sigmoid", "relu"),
    ("loss", "recon"): ("bce", "mse"),
    ("loss", "concept_target"): ("exclusive",),
    ("loss", "concept_loss"): ("mse", "bce"),
    ("loss", "concept_decode"): ("z", "mu", "mu_detached"),
    ("train", "precision"): ("auto", "fp32", "bf16"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(where: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default`` and convert where lossless."""
    kind = type(default)
    if kind in (bool, str) and isinstance(value, kind):
        return value
    if kind is int and _is_int(value):
        return value
    if kind is float and (_is_int(value) or isinstance(value, (float, str))):
        with contextlib.suppress(ValueError):  # YAML reads 1e-4 (no dot) as a string
            return float(value)
    if kind is tuple and isinstance(value, (list, tuple)) and all(map(_is_int, value)):
        return tuple(value)
    what = f"expected {kind.__name__}, got {value!r}"
    raise ConceptlibError(f"config key {where}: {what}")


def _validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Range checks that the types alone cannot express."""
    for (section, key), allowed in _CHOICES.items():
        if (value := getattr(getattr(cfg, section), key)) not in allowed:
            what = f"{value!r} is not one of {list(allowed)}"
            raise ConceptlibError(f"config key {section}.{key}: {what}")
    checks = [
        ("data.num_train_digits", 100 <= cfg.data.num_train_digits <= 60000),
        ("data.num_test_digits", 20 <= cfg.data.num_test_digits <= 10000),
        ("data.val_fraction", 0.0 < cfg.data.val_fraction < 1.0),
        ("concepts.per_concept", cfg.concepts.per_concept >= 10),
        ("concepts.test_per_concept", cfg.concepts.test_per_concept >= 1),
        ("concepts.p_train", 0.0 <= cfg.concepts.p_train <= 1.0),
        ("concepts.num_clusters", cfg.concepts.num_clusters >= 10),
        ("concepts.composite_fraction", 0.0 <= cfg.concepts.composite_fraction <= 1),
        ("concepts.max_parts", 2 <= cfg.concepts.max_parts <= 4),
        ("concepts.train_shift", 0 <= cfg.concepts.train_shift <= 4),
        ("concepts.probe_size", cfg.concepts.probe_size >= 20),
        ("model.latent_channels", cfg.model.latent_channels >= 1),
        ("model.enc_channels", len(cfg.model.enc_channels) == 4),
        ("model.dec_channels", len(cfg.model.dec_channels) == 4),
        ("model.concept_layer", 1 <= cfg.model.concept_layer <= 4),
        ("model.bottleneck_kernel", cfg.model.bottleneck_kernel in (1, 3, 5, 7)),
        ("loss.beta", cfg.loss.beta >= 0),
        ("loss.concept_weight", cfg.loss.concept_weight >= 0),
        ("loss.kl_warmup_epochs", cfg.loss.kl_warmup_epochs >= 0),
        ("loss.concept_warmup_epochs", cfg.loss.concept_warmup_epochs >= 0),
        ("loss.union_weight", cfg.loss.union_weight >= 0),
        ("train.num_epochs", cfg.train.num_epochs >= 1),
        ("train.batch_size", cfg.train.batch_size >= 1),
        ("train.lr", cfg.train.lr > 0),
        ("train.eval_batch_size", cfg.train.eval_batch_size >= 1),
        ("cluster.n_init", cfg.cluster.n_init >= 1),
        ("cluster.max_points", cfg.cluster.max_points >= 20),
        ("eval.nll_samples", cfg.eval.nll_samples >= 1),
        ("eval.nll_digits", cfg.eval.nll_digits >= 1),
    ]
    for key, ok in checks:
        if not ok:
            raise ConceptlibError(f"config key {key}: value out of range")
    if any(c < 1 for c in cfg.model.enc_channels + cfg.model.dec_channels):
        raise ConceptlibError("config key model.*_channels: channels must be >= 1")
    return cfg


def from_dict(raw: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """A validated config from nested plain data (as read from YAML); unknown
    keys raise. ``where`` names the source in messages (usually the YAML path)."""
    if not isinstance(raw, dict):
        raise ConceptlibError(f"{where}: expected a mapping at the top level")
    base = ExperimentConfig()
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SECTIONS:
            what = f"{key!r} (known: {', '.join(sorted(_SECTIONS))})"
            raise ConceptlibError(f"{where}: unknown config key {what}")
        default = getattr(base, key)
        if not dataclasses.is_dataclass(default):
            top[key] = _coerce(key, value, default)
            continue
        if not isinstance(value, dict):
            raise ConceptlibError(f"{where}: config key {key!r} must be a mapping")
        known = sorted(f.name for f in fields(default))
        kwargs = {}
        for sub, sub_value in value.items():
            if sub not in known:
                what = f"'{key}.{sub}' (known: {', '.join(known)})"
                raise ConceptlibError(f"{where}: unknown config key {what}")
            kwargs[sub] = _coerce(f"{key}.{sub}", sub_value, getattr(default, sub))
        top[key] = dataclasses.replace(default, **kwargs)
    return _validate(dataclasses.replace(base, **top))


def variant_config(
    cfg: ExperimentConfig, variant: str, recipe: tuple[str, ...] | list[str] = ()
) -> ExperimentConfig:
    """The config ``variant`` (one of :data:`VARIANTS`) trains with: ``cfg``, or
    under its fixed recipe (:attr:`~conceptlib.model.variants.Variant.recipe`, e.g.
    :data:`PAPER_RECIPE`) then ``recipe``, ``section.key=value`` overrides (e.g.
    ``loss.concept_loss=mse``; ignored for variants without). See ``ch-training``.
    """
    spec = variants.REGISTRY.get(variant)
    if spec is None or spec.recipe is None:
        return cfg
    parts = {
        name: dataclasses.replace(getattr(cfg, name), **values)
        for name, values in spec.recipe.items()
    }
    fixed = dataclasses.replace(cfg, **parts)
    return apply_overrides(fixed, list(recipe)) if recipe else fixed


def to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain nested data (tuples become lists), ready for YAML or JSON."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars), e.g.
    ``["train.num_epochs=3", "loss.concept_weight=20"]``."""
    raw = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConceptlibError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConceptlibError(f"override {item!r}: cannot parse value") from None
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConceptlibError(f"override {item!r}: unknown config key {key!r}")
        node[parts[-1]] = value
    return from_dict(raw, where="overrides")


def load_config(profile: str | os.PathLike = "quick", overrides=()) -> ExperimentConfig:
    """Load a profile by name (``smoke``, ``quick``, ``paper``) or a YAML path,
    then apply ``overrides`` (``section.key=value`` strings)."""
    name = str(profile)
    path = CONFIG_DIR / f"{name}.yaml" if name in PROFILES else Path(name)
    if path.suffix not in (".yaml", ".yml"):
        known = f"known: {', '.join(PROFILES)}, or a .yaml path"
        raise ConceptlibError(f"unknown profile {name!r} ({known})")
    if not path.is_file():
        raise ConceptlibError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise ConceptlibError(f"{path}: cannot read YAML ({reason})") from None
    cfg = from_dict(raw if raw is not None else {}, where=str(path))
    return apply_overrides(cfg, list(overrides)) if overrides else cfg


def dump_config(cfg: ExperimentConfig) -> str:
    """The config as YAML text (round-trips through :func:`from_dict`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(payload: dict[str, Any] | ExperimentConfig, length: int = 12) -> str:
    """Short SHA-256 of the canonical sorted JSON of ``payload`` plus ``RUN_FORMAT``."""
    if isinstance(payload, ExperimentConfig):
        payload = to_dict(payload)
    text = json.dumps({"run_format": RUN_FORMAT, **payload}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def default_profile() -> str:
    """``$CONCEPTLIB_PROFILE`` if set, else ``paper`` on a CUDA GPU, else ``quick``."""
    if env := os.environ.get("CONCEPTLIB_PROFILE"):
        return env
    import torch  # heavy: only when no profile is set

    return "paper" if torch.cuda.is_available() else "quick"


def run_cache(default: str = "../runs") -> str:
    """The chapters' run cache: ``$CONCEPTLIB_RUN_CACHE`` (``make test-kernels``
    sets it, to train afresh) if set, else ``default`` (``runs/`` from ``book/``)."""
    return os.environ.get("CONCEPTLIB_RUN_CACHE") or default


def out_dir(default: str = "../out") -> str:
    """Where chapters find ``conceptlib reproduce``'s ``<out>/<profile>/metrics.json``:
    ``$CONCEPTLIB_OUT`` (``make test-kernels`` points it at an empty folder) if set,
    else ``default`` (``out/`` from ``book/``)."""
    return os.environ.get("CONCEPTLIB_OUT") or default


def live_progress() -> bool:
    """Whether a chapter shows progress bars: only in a live Jupyter kernel, not
    while the book is built or checked (``$CONCEPTLIB_BUILD`` set)."""
    return not os.environ.get("CONCEPTLIB_BUILD") and "ipykernel" in sys.modules
