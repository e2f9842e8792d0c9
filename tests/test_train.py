"""Tests for conceptlib.train.loop: training, checkpoints, resumption and the run
cache."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from conceptlib.config import ExperimentConfig, apply_overrides
from conceptlib.config import load_config as _load_config
from conceptlib.errors import ConceptlibError
from conceptlib.files import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint
from conceptlib.train import loop as train
from conceptlib.train import runtime
from conceptlib.train.loop import (
    build_model,
    get_or_train,
    kl_weight,
    load_weights,
    resume_state,
    run_key,
    train_vae,
)
from conceptlib.train.runtime import resolve_device

K = 18
CPU = torch.device("cpu")


def _cfg(*overrides: str) -> ExperimentConfig:
    return _load_config(
        "smoke", ["train.num_epochs=1", "train.batch_size=64", *overrides]
    )


@pytest.fixture(scope="module")
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    """256 random uint8 images; a quarter of them concept images (labels >= 10)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (256, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (256,), generator=g)
    y[::4] = 10 + torch.randint(0, K, (64,), generator=g)
    return x, y


def _train(cfg, data, run_dir=None, variant="concept"):
    return train_vae(
        cfg, variant, *data, K, run_dir=run_dir, device=CPU, progress=False
    )


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------- training


def test_training_changes_the_weights(tiny_data) -> None:
    cfg = _cfg()
    before = build_model(cfg, K).state_dict()
    model, history = _train(cfg, tiny_data)
    after = model.state_dict()
    assert not model.training  # returned in eval mode
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert set(changed) == set(before)  # every tensor was updated
    assert all(torch.isfinite(v).all() for v in after.values())
    assert len(history) == 1
    record = history[0]
    assert record["epoch"] == 1
    for key in ("loss", "recon", "kl", "concept", "seconds", "img_per_s"):
        assert key in record and record[key] == record[key], key  # present, not NaN
    assert record["concept"] > 0
    assert record["loss"] > record["recon"]


def test_build_model_is_seeded() -> None:
    cfg = _cfg()
    _assert_same_weights(build_model(cfg, K), build_model(cfg, K))
    other = build_model(dataclasses.replace(cfg, seed=1), K)
    assert not torch.equal(
        other.state_dict()["encoder.0.weight"],
        build_model(cfg, K).state_dict()["encoder.0.weight"],
    )


def test_training_is_deterministic(tiny_data) -> None:
    a, ha = _train(_cfg(), tiny_data, variant="baseline")
    b, hb = _train(_cfg(), tiny_data, variant="baseline")
    _assert_same_weights(a, b)
    assert ha[0]["loss"] == hb[0]["loss"]


def test_concept_variant_differs_from_augmented(tiny_data) -> None:
    aug, h_aug = _train(_cfg(), tiny_data, variant="augmented")
    con, h_con = _train(_cfg(), tiny_data, variant="concept")
    assert not torch.equal(
        aug.state_dict()["decoder.0.weight"], con.state_dict()["decoder.0.weight"]
    )
    # only the concept variant's loss includes lambda * concept
    assert h_aug[0]["loss"] < h_con[0]["loss"]


def test_union_term_trains_and_is_recorded(tiny_data) -> None:
    plain, h_plain = _train(_cfg("loss.union_weight=0"), tiny_data)
    union, h_union = _train(_cfg("loss.union_weight=1"), tiny_data)
    assert "union" not in h_plain[0] and h_union[0]["union"] > 0  # nats per pair
    assert h_union[0]["loss"] > h_plain[0]["loss"]  # the term is added
    w = "encoder.0.weight"  # and it trains the encoder too
    assert not torch.equal(plain.state_dict()[w], union.state_dict()[w])
    # variants without a concept loss ignore it: the same run, the same weights
    a, _ = _train(_cfg("loss.union_weight=1"), tiny_data, variant="augmented")
    b, _ = _train(_cfg("loss.union_weight=0"), tiny_data, variant="augmented")
    _assert_same_weights(a, b)


def test_nonfinite_loss_raises(tiny_data) -> None:
    cfg = _cfg("train.lr=1.0e+30")
    with pytest.raises(ConceptlibError, match="loss is .* lower train.lr"):
        train_vae(cfg, "concept", *tiny_data, K, device=CPU, progress=False)


# ------------------------------------------------------------------ run cache


def test_get_or_train_uses_the_cache(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg()
    first = get_or_train(
        cfg, "concept", *tiny_data, K, cache_dir=tmp_path, device=CPU, progress=False
    )
    assert first.loaded is False
    assert first.key == run_key(cfg, "concept")
    assert first.path == tmp_path / f"concept-{first.key}"
    for name in ("model.pt", "checkpoint.pt", "config.yaml", "history.json"):
        assert (first.path / name).is_file(), name
    assert json.loads((first.path / "history.json").read_text()) == first.history

    def boom(*args, **kwargs):
        raise AssertionError("train_vae must not be called for a cached run")

    monkeypatch.setattr(train, "train_vae", boom)
    second = get_or_train(
        cfg, "concept", *tiny_data, K, cache_dir=tmp_path, device=CPU, progress=False
    )
    assert second.loaded is True
    assert second.key == first.key
    assert second.history == first.history
    assert not second.model.training
    _assert_same_weights(second.model, first.model)
    # another variant is another run and does need training
    with pytest.raises(AssertionError, match="must not be called"):
        get_or_train(
            cfg,
            "baseline",
            *tiny_data,
            K,
            cache_dir=tmp_path,
            device=CPU,
            progress=False,
        )


def test_get_or_train_reports_cache_load(
    tiny_data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg()
    get_or_train(
        cfg, "baseline", *tiny_data, K, cache_dir=tmp_path, device=CPU, progress=False
    )
    capsys.readouterr()
    get_or_train(
        cfg, "baseline", *tiny_data, K, cache_dir=tmp_path, device=CPU, progress=True
    )
    assert "loaded run baseline-" in capsys.readouterr().err


def test_get_or_train_unwritable_cache(tiny_data, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConceptlibError, match="cannot write run"):
        get_or_train(
            _cfg(),
            "baseline",
            *tiny_data,
            K,
            cache_dir=blocker,
            device=CPU,
            progress=False,
        )


# ------------------------------------------------------------------ resumption


def test_resume_is_bitwise_identical(tiny_data, tmp_path: Path) -> None:
    one, two = _cfg("train.num_epochs=1"), _cfg("train.num_epochs=2")
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    dir_a.mkdir()
    dir_b.mkdir()
    _, h1 = _train(one, tiny_data, dir_a)
    assert load_checkpoint(dir_a / "checkpoint.pt")["epoch"] == 1
    resumed, h_resumed = _train(two, tiny_data, dir_a)  # resumes after epoch 1
    straight, h_straight = _train(two, tiny_data, dir_b)
    _assert_same_weights(resumed, straight)
    assert [h["epoch"] for h in h_resumed] == [1, 2]
    assert h_resumed[0] == h1[0]  # the first epoch was not trained again
    for key in ("loss", "recon", "kl", "concept"):
        assert [h[key] for h in h_resumed] == [h[key] for h in h_straight], key
    state = load_checkpoint(dir_a / "checkpoint.pt")
    assert state["epoch"] == 2 and state["format"] == CHECKPOINT_FORMAT
    assert load_checkpoint(dir_a / "checkpoint.prev.pt")["epoch"] == 1


def test_resumed_training_says_so(tiny_data, tmp_path: Path, capsys) -> None:
    _train(_cfg("train.num_epochs=1"), tiny_data, tmp_path)
    capsys.readouterr()
    train_vae(
        _cfg("train.num_epochs=2"), "concept", *tiny_data, K, run_dir=tmp_path,
        device=CPU, progress=True,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert f"concept: resuming {tmp_path} after epoch 1 of 2" in err


def test_finished_run_dir_does_not_train_again(tiny_data, tmp_path: Path) -> None:
    cfg = _cfg()
    model, history = _train(cfg, tiny_data, tmp_path)
    again, history2 = _train(cfg, tiny_data, tmp_path)
    _assert_same_weights(model, again)
    assert history2 == history


def test_corrupt_checkpoint_falls_back_to_previous(tiny_data, tmp_path: Path) -> None:
    cfg = _cfg()
    model, history = _train(cfg, tiny_data, tmp_path)
    shutil.copy(tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt")
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated garbage")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        again, history2 = _train(cfg, tiny_data, tmp_path)
    _assert_same_weights(model, again)  # resumed from prev, after its last epoch
    assert history2 == history


def test_resume_state_without_checkpoints(tmp_path: Path) -> None:
    assert resume_state(tmp_path) is None
    (tmp_path / "checkpoint.pt").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="checkpoint.pt"):
        assert resume_state(tmp_path) is None


# ---------------------------------------------------------------- checkpoints


def test_load_checkpoint_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00\x01 this is not a checkpoint" * 10)
    with pytest.raises(ConceptlibError, match="not a valid conceptlib checkpoint") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_load_checkpoint_missing(tmp_path: Path) -> None:
    with pytest.raises(ConceptlibError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_checkpoint_without_format(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(ConceptlibError, match="format missing"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ConceptlibError, match="format missing"):
        load_checkpoint(path)


def test_load_checkpoint_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "obj": ExperimentConfig()}, path)
    with pytest.raises(ConceptlibError, match="not a valid conceptlib checkpoint"):
        load_checkpoint(path)


def test_atomic_torch_save_round_trip(tmp_path: Path) -> None:
    state = {"format": CHECKPOINT_FORMAT, "x": torch.arange(5)}
    atomic_torch_save(state, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["x"], torch.arange(5))


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    cfg = _cfg()
    small = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, enc_channels=(8, 16, 32, 32))
    )
    other = build_model(small, K).state_dict()
    model = build_model(cfg, K)
    with pytest.raises(ConceptlibError, match="weights do not fit this architecture"):
        load_weights(model, other, "somewhere/model.pt")
    with pytest.raises(ConceptlibError, match="somewhere/model.pt"):
        load_weights(model, {"bogus": torch.zeros(1)}, "somewhere/model.pt")
    load_weights(model, build_model(cfg, K).state_dict(), "fine")


def test_cached_model_of_another_architecture(tiny_data, tmp_path: Path) -> None:
    """A model.pt whose weights do not fit the config gives a one-line error."""
    cfg = _cfg()
    run = get_or_train(
        cfg, "baseline", *tiny_data, K, cache_dir=tmp_path, device=CPU, progress=False
    )
    small = build_model(
        dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, enc_channels=(8, 16, 32, 32))
        ),
        K,
    )
    state = load_checkpoint(run.path / "model.pt")
    state["model"] = small.state_dict()
    torch.save(state, run.path / "model.pt")
    with pytest.raises(ConceptlibError, match="weights do not fit"):
        get_or_train(
            cfg,
            "baseline",
            *tiny_data,
            K,
            cache_dir=tmp_path,
            device=CPU,
            progress=False,
        )


# ----------------------------------------------------------------- small parts


def test_kl_weight_warm_up_is_linear() -> None:
    cfg = apply_overrides(
        ExperimentConfig(), ["loss.kl_warmup_epochs=2", "loss.beta=3"]
    )
    progress = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 10.0]
    got = [kl_weight(cfg, p) for p in progress]
    assert got == pytest.approx([0.0, 0.75, 1.5, 2.25, 3.0, 3.0, 3.0])
    steps = [kl_weight(cfg, p) for p in (0.2, 0.4, 0.6)]
    assert steps[1] - steps[0] == pytest.approx(steps[2] - steps[1])


def test_kl_weight_without_warm_up() -> None:
    cfg = apply_overrides(ExperimentConfig(), ["loss.beta=0.5"])
    assert cfg.loss.kl_warmup_epochs == 0
    assert [kl_weight(cfg, p) for p in (0.0, 0.3, 5.0)] == [0.5, 0.5, 0.5]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConceptlibError, match="expected auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConceptlibError, match="no CUDA GPU"):
            resolve_device("cuda")


# ------------------------------------------------------------------ precision


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_hardware(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(runtime, "bf16_native", lambda device: native)
    cfg = runtime.resolve_precision(_cfg("train.precision=auto"), CPU)
    if native:  # the fastest configuration of benchmarks/train_loop.py
        assert (cfg.train.precision, cfg.train.channels_last) == ("bf16", True)
    else:
        assert (cfg.train.precision, cfg.train.channels_last) == ("fp32", False)


def test_explicit_precision_is_kept(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "bf16_native", lambda device: True)
    cfg = _cfg("train.precision=fp32")
    assert runtime.resolve_precision(cfg, CPU) is cfg


def test_auto_precision_keys_the_run_it_trains(monkeypatch, tiny_data, tmp_path):
    """A run under auto is the run of the precision it resolved to, not a third."""
    monkeypatch.setattr(runtime, "bf16_native", lambda device: False)
    run = get_or_train(
        _cfg("train.precision=auto"), "baseline", *tiny_data, K, tmp_path,
        device=CPU, progress=False,
    )  # fmt: skip
    assert run.key == run_key(_cfg("train.precision=fp32"), "baseline")
    assert run.key != run_key(_cfg("train.precision=bf16"), "baseline")


def test_bf16_training_runs_and_changes_the_numbers(tiny_data) -> None:
    fp32, _ = _train(_cfg(), tiny_data)
    bf16, history = _train(
        _cfg("train.precision=bf16", "train.channels_last=true"), tiny_data
    )
    assert history[0]["loss"] == history[0]["loss"]  # not NaN
    diff = max(
        (a - b).abs().max().item()
        for a, b in zip(fp32.state_dict().values(), bf16.state_dict().values())
    )
    assert 0 < diff < 0.1  # the same training, in another arithmetic


def test_eval_section_does_not_change_the_run_key() -> None:
    assert run_key(_cfg("eval.nll_digits=3"), "concept") == run_key(_cfg(), "concept")
