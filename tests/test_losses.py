"""Tests for conceptlib.model.losses: reconstruction, KL, concept losses and their
sum."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conceptlib.config import LossConfig
from conceptlib.model.losses import (
    FIRST_CONCEPT_LABEL,
    concept_loss,
    concept_targets,
    kl_loss,
    part_targets,
    recon_loss,
    total_loss,
)
from conceptlib.model.vae import VAEOutput

K = 18


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, 28, 28, generator=_gen(seed))


def _output(batch: int, channels: int = 32, size: int = 28, seed: int = 1):
    g = _gen(seed)
    mu = torch.randn(batch, 4, 7, 7, generator=g)
    logvar = 0.5 * torch.randn(batch, 4, 7, 7, generator=g)
    hidden_pre = torch.randn(batch, channels, size, size, generator=g)
    hidden = torch.sigmoid(hidden_pre)
    return VAEOutput(
        logits=torch.randn(batch, 1, 28, 28, generator=g),
        mu=mu,
        logvar=logvar,
        z=mu,
        hidden=hidden,
        hidden_pre=hidden_pre,
    )


# -------------------------------------------------------------------------- KL


def test_kl_is_exactly_zero_at_the_prior() -> None:
    zeros = torch.zeros(3, 4, 7, 7)
    kl = kl_loss(zeros, zeros)
    assert kl.shape == (3,)
    assert torch.equal(kl, torch.zeros(3))


def test_kl_positive_elsewhere() -> None:
    g = _gen(0)
    mu = torch.randn(5, 4, 7, 7, generator=g)
    logvar = torch.randn(5, 4, 7, 7, generator=g)
    assert (kl_loss(mu, logvar) > 0).all()
    zeros = torch.zeros(1, 4, 7, 7)
    assert kl_loss(zeros + 0.1, zeros) > 0  # mean off zero
    assert kl_loss(zeros, zeros + 0.1) > 0  # variance off one
    assert kl_loss(zeros, zeros - 0.1) > 0


def test_kl_closed_form() -> None:
    mu = torch.full((1, 4, 7, 7), 2.0)
    logvar = torch.full((1, 4, 7, 7), float(torch.log(torch.tensor(3.0))))
    # per element: 0.5 * (var + mu^2 - 1 - log var)
    per = 0.5 * (3.0 + 4.0 - 1.0 - float(torch.log(torch.tensor(3.0))))
    torch.testing.assert_close(kl_loss(mu, logvar), torch.tensor([per * 196]))


# ---------------------------------------------------------------- reconstruction


def test_recon_bce_matches_manual() -> None:
    x = _images(4)
    logits = torch.randn(4, 1, 28, 28, generator=_gen(3))
    p = torch.sigmoid(logits.double())
    manual = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)
    got = recon_loss(logits, x, "bce")
    assert got.shape == (4,)
    torch.testing.assert_close(got.double(), manual, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(recon_loss(logits, x), got)  # bce is the default


def test_recon_mse_is_summed_squared_error() -> None:
    x = _images(4)
    logits = torch.randn(4, 1, 28, 28, generator=_gen(3))
    manual = ((torch.sigmoid(logits) - x) ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(recon_loss(logits, x, "mse"), manual)


def test_recon_bce_of_a_binary_image_is_small_when_confident() -> None:
    x = (_images(2) > 0.5).float()
    logits = (x * 2 - 1) * 20.0
    assert (recon_loss(logits, x, "bce") < 1e-4 * 784).all()
    assert (recon_loss(-logits, x, "bce") > 784 * 10).all()


# --------------------------------------------------------------------- concepts


def _cl(hidden, x, labels, k, kind="mse"):
    """The concept loss of every image of a batch (0 for digits)."""
    target, mask = concept_targets(x, labels, k, hidden.shape[-1])
    return concept_loss(hidden, target, kind) * mask


def test_part_targets_of_one_part_are_exclusive_targets() -> None:
    x = _images(3)
    labels = torch.tensor([10, 14, 27])
    exclusive, _ = concept_targets(x, labels, K)
    parts = torch.cat([x, torch.zeros(3, 2, 28, 28)], dim=1)  # (3, P=3, 28, 28)
    which = torch.tensor([[0, -1, -1], [4, -1, -1], [17, -1, -1]])
    torch.testing.assert_close(part_targets(parts, which, K), exclusive)


def test_part_targets_give_each_concept_its_own_ink() -> None:
    a, b = _images(2)
    parts = torch.stack([a, b])[None, :, 0]  # (1, 2, 28, 28)
    target = part_targets(parts, torch.tensor([[3, 11]]), K)
    torch.testing.assert_close(target[0, 3], a[0])
    torch.testing.assert_close(target[0, 11], b[0])
    others = [k for k in range(K) if k not in (3, 11)]
    assert (target[0, others] == 0).all()


def test_total_reads_the_decoding_of_mu_when_present() -> None:
    x, out = _images(4), _output(4)
    labels = torch.tensor([0, 10, 1, 12])
    cfg = LossConfig(concept_loss="bce")
    rows = torch.tensor([1, 3])
    out.mean_hidden_pre = torch.randn(2, 32, 28, 28, generator=_gen(11))
    out.mean_hidden = torch.sigmoid(out.mean_hidden_pre)
    target, _ = concept_targets(x[rows], labels[rows], K)
    parts = total_loss(out, x, labels, cfg, K, True)
    expected = concept_loss(out.mean_hidden_pre, target, "bce").sum() / 2
    torch.testing.assert_close(parts.concept, expected)
    # the concept weight argument overrides the config (warm-up)
    zero = total_loss(out, x, labels, cfg, K, True, concept_weight=0.0)
    off = total_loss(out, x, labels, cfg, K, False)
    torch.testing.assert_close(zero.total, off.total)


def test_exclusive_targets_use_only_the_own_channel() -> None:
    x = _images(4)
    labels = torch.tensor([10, 12, 27, 3])
    target, mask = concept_targets(x, labels, K)
    assert target.shape == (4, K, 28, 28)
    assert mask.tolist() == [True, True, True, False]
    for b, k in enumerate([0, 2, 17]):
        torch.testing.assert_close(target[b, k], x[b, 0])
        others = torch.cat([target[b, :k], target[b, k + 1 :]])
        assert (others == 0).all()
    assert (target[3] == 0).all()  # a digit gets no target


def test_targets_are_pooled_to_the_concept_layer() -> None:
    x = _images(2)
    target, _ = concept_targets(x, torch.tensor([11, 11]), K, size=14)
    assert target.shape == (2, K, 14, 14)
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(target[:, 1], pooled[:, 0])


def test_concept_loss_zero_at_the_targets() -> None:
    x = _images(5)
    labels = torch.tensor([10, 15, 27, 13, 10])
    target, _ = concept_targets(x, labels, K)
    extra = torch.rand(5, 32 - K, 28, 28, generator=_gen(9))  # not concept channels
    hidden = torch.cat([target, extra], dim=1)
    loss = _cl(hidden, x, labels, K)
    assert loss.shape == (5,)
    assert torch.equal(loss, torch.zeros(5))


def test_concept_loss_positive_off_target() -> None:
    x = _images(3)
    labels = torch.tensor([10, 11, 12])
    target, _ = concept_targets(x, labels, K)
    # the image in the wrong channel
    wrong = torch.roll(target, shifts=1, dims=1)
    assert (_cl(wrong, x, labels, K) > 0).all()
    # a small disturbance of one pixel of another concept channel
    nudged = target.clone()
    nudged[:, 5, 0, 0] += 0.5
    torch.testing.assert_close(_cl(nudged, x, labels, K), torch.full((3,), 0.25))


def test_concept_loss_is_summed_squared_error() -> None:
    x = _images(2)
    labels = torch.tensor([14, 20])
    hidden = torch.rand(2, 32, 28, 28, generator=_gen(4))
    target, _ = concept_targets(x, labels, K)
    manual = ((hidden[:, :K] - target) ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(_cl(hidden, x, labels, K, "mse"), manual)


def test_concept_loss_zero_for_digits() -> None:
    x = _images(4)
    labels = torch.tensor([0, 3, 9, 5])
    hidden = torch.rand(4, 32, 28, 28, generator=_gen(5))
    assert torch.equal(_cl(hidden, x, labels, K), torch.zeros(4))
    assert torch.equal(_cl(hidden, x, labels, K, "bce"), torch.zeros(4))


def test_concept_loss_bce() -> None:
    x = _images(2)
    labels = torch.tensor([10, 4])
    logits = torch.randn(2, 32, 28, 28, generator=_gen(6))
    target, _ = concept_targets(x, labels, K)
    manual = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[0, :K], target[0], reduction="sum"
    )
    loss = _cl(logits, x, labels, K, "bce")
    torch.testing.assert_close(loss[0], manual)
    assert loss[1] == 0


# ------------------------------------------------------------------------ total


def _parts(out, x, labels):
    recon = recon_loss(out.logits, x)
    kl = kl_loss(out.mu, out.logvar)
    concept = _cl(out.hidden, x, labels, K)
    return recon, kl, concept


def test_total_without_concept_ignores_concept_weight() -> None:
    x, out = _images(6), _output(6)
    labels = torch.tensor([1, 2, 10, 11, 20, 27])
    a = total_loss(out, x, labels, LossConfig(concept_weight=10.0), K, False)
    b = total_loss(out, x, labels, LossConfig(concept_weight=1000.0), K, False)
    assert torch.equal(a.total, b.total)
    recon, kl, _ = _parts(out, x, labels)
    torch.testing.assert_close(a.total, (recon + kl).mean())


def test_total_with_concept_adds_weighted_concept_loss() -> None:
    x, out = _images(6), _output(6)
    labels = torch.tensor([1, 2, 10, 11, 20, 27])
    cfg = LossConfig(concept_weight=7.0, beta=1.5, concept_loss="mse")
    recon, kl, concept = _parts(out, x, labels)
    with_c = total_loss(out, x, labels, cfg, K, True)
    without = total_loss(out, x, labels, cfg, K, False)
    expected = (recon + 1.5 * kl + 7.0 * concept).mean()
    torch.testing.assert_close(with_c.total, expected)
    torch.testing.assert_close(
        with_c.total - without.total, 7.0 * concept.mean(), rtol=1e-4, atol=1e-3
    )
    # the reported parts: batch means, the concept part per *concept* image
    torch.testing.assert_close(with_c.recon, recon.mean())
    torch.testing.assert_close(with_c.kl, kl.mean())
    torch.testing.assert_close(with_c.concept, concept.sum() / 4)
    torch.testing.assert_close(without.concept, with_c.concept)  # always reported


def test_total_identity_when_all_are_concepts() -> None:
    x, out = _images(4), _output(4, seed=2)
    labels = torch.tensor([10, 12, 14, 16])
    cfg = LossConfig(concept_weight=3.0, concept_loss="mse")
    with_c = total_loss(out, x, labels, cfg, K, True)
    without = total_loss(out, x, labels, cfg, K, False)
    torch.testing.assert_close(
        with_c.total, without.total + 3.0 * with_c.concept, rtol=1e-5, atol=1e-3
    )


def test_total_concept_part_zero_without_concept_images() -> None:
    x, out = _images(3), _output(3)
    labels = torch.tensor([0, 1, 2])
    parts = total_loss(out, x, labels, LossConfig(), K, True)
    assert parts.concept == 0
    without = total_loss(out, x, labels, LossConfig(), K, False)
    assert torch.equal(parts.total, without.total)


def test_beta_argument_overrides_config() -> None:
    x, out = _images(4), _output(4)
    labels = torch.tensor([0, 1, 10, 11])
    cfg = LossConfig(beta=4.0)
    recon, kl, _ = _parts(out, x, labels)
    default = total_loss(out, x, labels, cfg, K, False)
    torch.testing.assert_close(default.total, (recon + 4.0 * kl).mean())
    zero = total_loss(out, x, labels, cfg, K, False, beta=0.0)
    torch.testing.assert_close(zero.total, recon.mean())
    half = total_loss(out, x, labels, cfg, K, False, beta=0.5)
    torch.testing.assert_close(half.total, (recon + 0.5 * kl).mean())
    assert torch.equal(zero.kl, default.kl)  # the reported KL is unweighted


def test_total_uses_configured_losses() -> None:
    x, out = _images(4), _output(4)
    labels = torch.tensor([0, 1, 10, 11])
    mse = total_loss(out, x, labels, LossConfig(recon="mse"), K, False, beta=0.0)
    torch.testing.assert_close(mse.recon, recon_loss(out.logits, x, "mse").mean())
    cfg = dataclasses.replace(LossConfig(), concept_loss="bce")
    bce = total_loss(out, x, labels, cfg, K, True)
    # bce is computed on the pre-activation (the concept logits)
    expected = _cl(out.hidden_pre, x, labels, K, "bce").sum() / 2
    torch.testing.assert_close(bce.concept, expected)


def test_total_has_gradients() -> None:
    x = _images(2)
    out = _output(2)
    out.logits.requires_grad_(True)
    out.hidden.requires_grad_(True)
    parts = total_loss(
        out, x, torch.tensor([3, 10]), LossConfig(concept_loss="mse"), K, True
    )
    parts.total.backward()
    assert out.logits.grad is not None and out.logits.grad.abs().sum() > 0
    assert out.hidden.grad[1, :K].abs().sum() > 0
    assert out.hidden.grad[0].abs().sum() == 0  # a digit gets no concept gradient


@pytest.mark.parametrize("label", [FIRST_CONCEPT_LABEL - 1, FIRST_CONCEPT_LABEL])
def test_first_concept_label_boundary(label: int) -> None:
    _, mask = concept_targets(_images(1), torch.tensor([label]), K)
    assert bool(mask[0]) == (label >= 10)


def test_total_bce_concept_gradients_reach_the_logits() -> None:
    x = _images(2)
    out = _output(2)
    out.hidden_pre.requires_grad_(True)
    parts = total_loss(out, x, torch.tensor([3, 10]), LossConfig(), K, True)
    parts.total.backward()
    assert LossConfig().concept_loss == "bce"
    assert out.hidden_pre.grad[1, :K].abs().sum() > 0
    assert out.hidden_pre.grad[0].abs().sum() == 0  # a digit gets no concept gradient


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("all_rows", [False, True])
def test_take_concepts_equals_indexing(channels_last: bool, all_rows: bool) -> None:
    """Same values and gradients as ``h[rows, :K]``; the gradient keeps h's format."""
    from conceptlib.model.losses import take_concepts

    h = torch.randn(6, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    rows = None if all_rows else torch.tensor([4, 1, 2])
    a, b = h.clone().requires_grad_(), h.clone().requires_grad_()
    ya = take_concepts(a, rows, 3)
    yb = b[:, :3] if rows is None else b[rows, :3]
    assert torch.equal(ya, yb)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(a.grad, b.grad)
    assert a.grad.is_contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )


def _union_model():
    from conceptlib.config import load_config
    from conceptlib.model.vae import ConvVAE

    torch.manual_seed(0)
    return ConvVAE(load_config("smoke").model, 18)


def test_union_loss_decodes_the_operators_union() -> None:
    from conceptlib import operators as op
    from conceptlib.model.losses import present_concepts, recon_loss, union_loss

    model = _union_model().eval()
    x = torch.rand(6, 1, 28, 28).round()
    labels = torch.tensor([3, 12, 7, 10, 17, 5])  # digits 3, 7, 5; concepts 2, 0, 7
    present = present_concepts(labels, None, 18)
    assert present.tolist() == [[c in (k,) for c in range(18)] for k in (2, 0, 7)]
    mu = model.encode(x)[0]
    got = union_loss(model, mu, x, labels, present)
    # by hand: digit i with concept image i, through operators.add (unmasked)
    with torch.no_grad():
        h = model.concept_act(model.decode_to(mu))
        base = model.concept_act(model.decode_to(model.encode(x[:1] * 0)[0]))
        want = []
        for d, c, k in ((0, 1, 2), (2, 3, 0), (5, 4, 7)):
            u = op.add(h[d : d + 1], h[c : c + 1], base, k, 18, masked=False)
            target = torch.maximum(x[d : d + 1], x[c : c + 1])
            want.append(recon_loss(model.decode_from(u), target))
    torch.testing.assert_close(got, torch.cat(want).mean(), rtol=1e-5, atol=1e-4)
    got.backward()  # the term trains the encoder and the decoder
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.decoder[-1].weight.grad.abs().sum() > 0


def test_union_loss_reuses_the_forward_pass_layers() -> None:
    """Training hands it the concept images' layers of ``mu`` that the forward pass
    decoded already: the same term and the same gradients as decoding them again."""
    from conceptlib.model.losses import present_concepts, union_loss

    model = _union_model()
    x = torch.rand(8, 1, 28, 28)
    labels = torch.tensor([3, 12, 7, 10, 17, 5, 11, 1])
    rows = (labels >= 10).nonzero().squeeze(1)
    present = present_concepts(labels, None, 18)
    results = []
    for reuse in (False, True):
        model.zero_grad()
        out = model(x, sample=False, mean_rows=rows)
        same = out.mean_hidden if reuse else None
        loss = union_loss(model, out.mu, x, labels, present, same)
        loss.backward()
        results.append((loss, [p.grad.clone() for p in model.parameters()]))
    (decoded, g_decoded), (reused, g_reused) = results
    torch.testing.assert_close(reused, decoded)
    for a, b in zip(g_reused, g_decoded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_union_loss_without_pairs_is_zero() -> None:
    from conceptlib.model.losses import present_concepts, union_loss

    model = _union_model()
    x = torch.rand(3, 1, 28, 28)
    labels = torch.tensor([1, 2, 3])  # digits only
    present = present_concepts(labels, None, 18)
    assert float(union_loss(model, model.encode(x)[0], x, labels, present)) == 0.0


def test_present_concepts_of_composites() -> None:
    from conceptlib.model.losses import present_concepts

    parts = torch.tensor([[4, -1, -1], [0, 17, 3]])
    present = present_concepts(torch.tensor([14, 10]), parts, 18)
    assert present.nonzero().tolist() == [[0, 4], [1, 0], [1, 3], [1, 17]]
