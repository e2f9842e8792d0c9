"""Tests for conceptlib.measures.formulas: the beam search finds planted formulas."""

from __future__ import annotations

import torch

from conceptlib.measures.formulas import (
    Formula,
    explain_channel,
    explain_layer,
    summary,
)
from conceptlib.measures.vocab import flat_channels, on_threshold


def channel_masks(acts: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(C, N*H*W)`` bool: each channel above its top-0.5 %
    quantile over all the probe pixels (Network Dissection's rule), as
    :func:`explain_layer` thresholds them."""
    flat = flat_channels(acts).float()
    return flat > on_threshold(flat)[:, None]


def _concepts(k: int = 6, p: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(k, p, generator=g) < 0.1


def test_planted_formulas_are_found() -> None:
    m = _concepts()
    for on, want in (
        (m[2], "c2"),
        (m[0] | m[3], "c0 OR c3"),
        (m[1] & ~m[4], "c1 AND NOT c4"),
        ((m[0] | m[3]) & ~m[5], "(c0 OR c3) AND NOT c5"),
    ):
        e = explain_channel(on, m)
        names = [f"c{i}" for i in range(6)]
        text = e.formula.text(names)
        assert e.iou == 1.0, (want, text)
        # OR is symmetric: either order is the same formula
        assert sorted(text.replace("(", "").replace(")", "").split()) == sorted(
            want.replace("(", "").replace(")", "").split()
        )


def test_single_concept_is_never_better_than_the_formula() -> None:
    m = _concepts(seed=1)
    noise = torch.rand(m.shape[1], generator=torch.Generator().manual_seed(2)) < 0.05
    e = explain_channel((m[0] | m[1]) ^ noise, m, max_length=2)
    assert e.iou >= e.single_iou and e.single in (0, 1)
    assert len(e.formula.concepts()) <= 2


def test_layer_thresholds_each_channel_at_its_quantile() -> None:
    acts = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    on = channel_masks(acts)
    assert on.shape == (3, 640)
    assert (on.sum(1) == 4).all()  # above the 99.5 % quantile of 640 pixels
    masks = torch.rand(10, 4, 8, 8, generator=torch.Generator().manual_seed(4)) < 0.2
    out = explain_layer(acts, masks, max_length=2)
    assert [e.channel for e in out] == [0, 1, 2]
    s = summary(out, num_concepts=2)
    assert set(s) == {
        "formula_iou_concept_channels",
        "single_iou_concept_channels",
        "formula_iou_other_channels",
        "single_iou_other_channels",
    }
    assert Formula(0, (("OR", 1), ("AND NOT", 2))).text("abc") == "(a OR b) AND NOT c"


def test_held_out_scores_can_show_a_formula_overfits() -> None:
    g = torch.Generator().manual_seed(5)
    masks = torch.rand(40, 6, 8, 8, generator=g) < 0.1
    # the channel is concept 0 plus noise: extra concepts fit the noise of the
    # searched probes only
    acts = masks[:, :1].float() + 0.9 * torch.rand(40, 1, 8, 8, generator=g)
    searched, held = (acts[:20], masks[:20]), (acts[20:], masks[20:])
    (e,) = explain_layer(*searched, max_length=3, held=held)
    # the formula's mask reproduces the search's in-sample IoU
    flat = searched[1].transpose(0, 1).reshape(6, -1)
    on = channel_masks(searched[0])[0]
    inter = (e.formula.mask(flat) & on).sum() / (e.formula.mask(flat) | on).sum()
    assert abs(float(inter) - e.iou) < 1e-9
    assert 0.0 <= e.held_iou <= 1.0 and 0.0 <= e.held_single_iou <= 1.0
    s = summary([e], num_concepts=1)
    gain = s["gain_held_concept_channels"]
    assert (
        gain == e.held_iou - e.held_single_iou
        and s["gain_held_se_concept_channels"] == 0
    )
    assert e.iou >= e.single_iou  # in sample the search never loses
