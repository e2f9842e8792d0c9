"""Tests for conceptlib.config: profiles, validation, overrides and hashing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from conceptlib.config import (
    PAPER_RECIPE,
    PROFILES,
    VARIANTS,
    ExperimentConfig,
    apply_overrides,
    config_hash,
    dump_config,
    from_dict,
    load_config,
    to_dict,
    variant_config,
)
from conceptlib.errors import ConceptlibError
from conceptlib.train.loop import run_key

# ---------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_load(name: str) -> None:
    cfg = load_config(name)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.profile == name


def test_profile_names() -> None:
    assert set(PROFILES) == {"smoke", "quick", "paper"}


def test_paper_profile_has_the_paper_sizes() -> None:
    cfg = load_config("paper")
    assert cfg.concepts.per_concept == 3000
    assert cfg.train.num_epochs == 50
    assert cfg.data.num_train_digits == 60000
    assert cfg.data.val_fraction == pytest.approx(0.3)


def test_profiles_grow_in_size() -> None:
    smoke, quick, paper = (load_config(p) for p in ("smoke", "quick", "paper"))
    for attr in ("num_train_digits",):
        assert (
            getattr(smoke.data, attr)
            < getattr(quick.data, attr)
            <= getattr(paper.data, attr)
        )
    assert (
        smoke.concepts.per_concept
        < quick.concepts.per_concept
        < paper.concepts.per_concept
    )
    assert smoke.train.num_epochs <= quick.train.num_epochs < paper.train.num_epochs


@pytest.mark.parametrize("name", PROFILES)
def test_yaml_round_trip(name: str) -> None:
    cfg = load_config(name)
    text = dump_config(cfg)
    back = from_dict(yaml.safe_load(text))
    assert back == cfg
    assert dump_config(back) == text


def test_yaml_round_trip_of_nondefault_values() -> None:
    cfg = apply_overrides(
        ExperimentConfig(),
        [
            "model.enc_channels=[8, 16, 24, 32]",
            "loss.recon=mse",
            "train.channels_last=true",
            "loss.kl_warmup_epochs=1.5",
        ],
    )
    back = from_dict(yaml.safe_load(dump_config(cfg)))
    assert back == cfg
    assert back.model.enc_channels == (8, 16, 24, 32)
    assert isinstance(back.model.enc_channels, tuple)


def test_load_config_from_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("profile: mine\ntrain:\n  num_epochs: 7\n")
    cfg = load_config(path)
    assert cfg.profile == "mine"
    assert cfg.train.num_epochs == 7
    assert cfg.train.batch_size == ExperimentConfig().train.batch_size


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == ExperimentConfig()


def test_unknown_profile_raises() -> None:
    with pytest.raises(ConceptlibError, match="unknown profile 'nope'"):
        load_config("nope")


def test_missing_yaml_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ConceptlibError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_yaml_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConceptlibError, match="cannot read YAML"):
        load_config(path)


# -------------------------------------------------------------------- validation


def test_unknown_top_level_key_raises() -> None:
    with pytest.raises(ConceptlibError, match="'trian'"):
        from_dict({"trian": {"num_epochs": 1}})


def test_unknown_section_key_raises() -> None:
    with pytest.raises(ConceptlibError, match=r"train\.num_epoch\b"):
        from_dict({"train": {"num_epoch": 1}})


def test_section_must_be_a_mapping() -> None:
    with pytest.raises(ConceptlibError, match="'train' must be a mapping"):
        from_dict({"train": 3})


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConceptlibError, match="mapping"):
        from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"train": {"num_epochs": "3"}}, "train.num_epochs"),
        ({"train": {"num_epochs": 2.5}}, "train.num_epochs"),
        ({"train": {"num_epochs": True}}, "train.num_epochs"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"train": {"channels_last": 1}}, "train.channels_last"),
        ({"loss": {"recon": 3}}, "loss.recon"),
        ({"model": {"enc_channels": [8, "x", 8, 8]}}, "model.enc_channels"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_wrong_type_raises(raw: dict, key: str) -> None:
    with pytest.raises(ConceptlibError, match=rf"config key {key}: expected"):
        from_dict(raw)


def test_int_is_accepted_for_float() -> None:
    cfg = from_dict({"loss": {"concept_weight": 20}})
    assert cfg.loss.concept_weight == 20.0
    assert isinstance(cfg.loss.concept_weight, float)


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"data": {"val_fraction": 1.5}}, "data.val_fraction"),
        ({"data": {"val_fraction": 0.0}}, "data.val_fraction"),
        ({"loss": {"concept_weight": -1.0}}, "loss.concept_weight"),
        ({"loss": {"beta": -0.1}}, "loss.beta"),
        ({"data": {"num_train_digits": 60001}}, "data.num_train_digits"),
        ({"concepts": {"p_train": 1.2}}, "concepts.p_train"),
        ({"train": {"num_epochs": 0}}, "train.num_epochs"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"model": {"concept_layer": 5}}, "model.concept_layer"),
        ({"model": {"enc_channels": [8, 8, 8]}}, "model.enc_channels"),
        ({"loss": {"recon": "l1"}}, "loss.recon"),
        ({"train": {"precision": "fp16"}}, "train.precision"),
    ],
)
def test_out_of_range_raises(raw: dict, key: str) -> None:
    with pytest.raises(ConceptlibError, match=rf"config key {key}"):
        from_dict(raw)


def test_non_positive_channels_raise() -> None:
    with pytest.raises(ConceptlibError, match="channels"):
        from_dict({"model": {"dec_channels": [64, 32, 0, 16]}})


# --------------------------------------------------------------------- overrides


def test_apply_overrides() -> None:
    cfg = load_config("smoke")
    new = apply_overrides(
        cfg, ["train.num_epochs=3", "loss.concept_weight=20", "seed=5"]
    )
    assert new.train.num_epochs == 3
    assert new.loss.concept_weight == 20.0
    assert new.seed == 5
    # everything else is untouched, and the original is unchanged (frozen)
    restored = dataclasses.replace(new, seed=cfg.seed, train=cfg.train, loss=cfg.loss)
    assert restored == cfg
    assert cfg.train.num_epochs == 1


def test_load_config_applies_overrides() -> None:
    cfg = load_config("smoke", ["train.batch_size=16"])
    assert cfg.train.batch_size == 16
    assert cfg.profile == "smoke"


def test_override_value_with_equals_sign() -> None:
    cfg = apply_overrides(ExperimentConfig(), ["concepts.catalogue=a=b.csv"])
    assert cfg.concepts.catalogue == "a=b.csv"


@pytest.mark.parametrize(
    "item, match",
    [
        ("train.nope=1", "unknown config key 'train.nope'"),
        ("nope.num_epochs=1", "unknown config key 'nope.num_epochs'"),
        ("seed.x=1", "unknown config key 'seed.x'"),
        ("train.num_epochs", "expected section.key=value"),
        ("train.num_epochs=abc", "train.num_epochs: expected int"),
        ("train.num_epochs=[1", "cannot parse value"),
        ("train.num_epochs=-2", "train.num_epochs: value out of range"),
    ],
)
def test_apply_overrides_rejects(item: str, match: str) -> None:
    with pytest.raises(ConceptlibError, match=match):
        apply_overrides(ExperimentConfig(), [item])


# ------------------------------------------------------------------------ hashing


def _changed(value):
    """A value of the same type that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.125
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value[:-1], value[-1] + 1)
    raise AssertionError(f"unexpected type {type(value)}")


def _every_change(cfg: ExperimentConfig):
    """``(name, changed config)`` for every field of every section."""
    for top in dataclasses.fields(cfg):
        value = getattr(cfg, top.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                new = dataclasses.replace(
                    value, **{sub.name: _changed(getattr(value, sub.name))}
                )
                yield (
                    f"{top.name}.{sub.name}",
                    dataclasses.replace(cfg, **{top.name: new}),
                )
        else:
            yield top.name, dataclasses.replace(cfg, **{top.name: _changed(value)})


def test_config_hash_stable_for_equal_configs() -> None:
    a, b = load_config("smoke"), load_config("smoke")
    assert a is not b
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) == config_hash(to_dict(a))
    assert config_hash(a) == config_hash(from_dict(yaml.safe_load(dump_config(a))))
    assert len(config_hash(a)) == 12
    assert len(config_hash(a, length=20)) == 20


def test_config_hash_changes_with_every_field() -> None:
    base = load_config("smoke")
    h0 = config_hash(base)
    seen = {h0}
    changes = list(_every_change(base))
    assert len(changes) > 30  # every field of every section is covered
    for name, cfg in changes:
        h = config_hash(cfg)
        assert h != h0, name
        seen.add(h)
    assert len(seen) == len(changes) + 1


def test_run_key_differs_between_variants() -> None:
    cfg = load_config("smoke")
    keys = {v: run_key(cfg, v) for v in VARIANTS}
    assert len(set(keys.values())) == len(VARIANTS)
    assert run_key(cfg, "concept") == run_key(load_config("smoke"), "concept")


def test_run_key_ignores_cluster_and_profile() -> None:
    cfg = load_config("smoke")
    other = apply_overrides(
        cfg, ["cluster.n_init=7", "cluster.max_points=123", "cluster.seed=9"]
    )
    assert config_hash(other) != config_hash(cfg)
    renamed = dataclasses.replace(cfg, profile="renamed")
    for v in VARIANTS:
        assert run_key(other, v) == run_key(cfg, v)
        assert run_key(renamed, v) == run_key(cfg, v)


def test_run_key_changes_with_what_changes_training() -> None:
    cfg = load_config("smoke")
    # fields that do not change the trained weights may or may not be in the key
    free = (
        "profile",
        "cluster.",
        "eval.",
        "train.eval_batch_size",
        "concepts.test_per_concept",
        "concepts.probe_size",
    )
    checked = 0
    for name, changed in _every_change(cfg):
        if name.startswith(free):
            continue
        assert run_key(changed, "concept") != run_key(cfg, "concept"), name
        checked += 1
    assert checked > 20


def test_paper_variant_trains_the_papers_recipe() -> None:
    cfg = load_config("smoke", ["loss.concept_weight=3", "concepts.train_shift=2"])
    paper = variant_config(cfg, "concept_paper")
    for section, values in PAPER_RECIPE.items():
        for key, value in values.items():
            assert getattr(getattr(paper, section), key) == value
    assert variant_config(cfg, "concept") is cfg
    assert paper.model == cfg.model and paper.train == cfg.train


def test_only_the_concept_variant_depends_on_composites() -> None:
    cfg = load_config("smoke")
    for change in (
        "concepts.composite_fraction=0.9",
        "concepts.train_shift=1",
        "concepts.max_parts=2",
        "loss.concept_decode=z",
    ):
        other = apply_overrides(cfg, [change])
        assert run_key(other, "concept") != run_key(cfg, "concept"), change
        for v in ("baseline", "augmented"):
            assert run_key(other, v) == run_key(cfg, v), (change, v)
        paper = variant_config(other, "concept_paper")
        assert run_key(paper, "concept_paper") == run_key(
            variant_config(cfg, "concept_paper"), "concept_paper"
        ), change


def test_keys_added_later_keep_earlier_run_keys_at_their_neutral_value() -> None:
    from conceptlib.train.loop import NEUTRAL_KEYS

    for section, key, neutral in NEUTRAL_KEYS:
        # at its neutral value the key is left out of the run key, as before it
        cfg = load_config("smoke", [f"{section}.{key}={neutral}"])
        assert to_dict(cfg)[section][key] == neutral
        changed = apply_overrides(cfg, [f"{section}.{key}={neutral + 1}"])
        assert run_key(changed, "concept") != run_key(cfg, "concept")
