"""Tests for conceptlib.model.vae: the fully convolutional VAE and its concept layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conceptlib.config import ModelConfig
from conceptlib.errors import ConceptlibError
from conceptlib.model.vae import ConvVAE, VAEOutput, count_parameters

K = 18
# the paper's architecture, spelled out so that changed defaults do not hide here
PAPER = ModelConfig(
    latent_channels=4,
    enc_channels=(16, 32, 64, 64),
    dec_channels=(64, 32, 32, 16),
    concept_layer=3,
    bottleneck_kernel=3,
    concept_activation="sigmoid",
)


def _model(cfg: ModelConfig = PAPER, num_concepts: int = K) -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(cfg, num_concepts).eval()


def _images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, 28, 28, generator=g)


def test_output_shapes() -> None:
    out = _model()(_images(3))
    assert isinstance(out, VAEOutput)
    assert out.logits.shape == (3, 1, 28, 28)
    for name in ("mu", "logvar", "z"):
        assert getattr(out, name).shape == (3, 4, 7, 7), name
    assert out.hidden.shape == (3, 32, 28, 28)
    assert out.hidden_pre.shape == (3, 32, 28, 28)


def test_concept_channels_are_sigmoid_and_the_rest_relu() -> None:
    out = _model()(_images(3))
    head, tail = out.hidden[:, :K], out.hidden[:, K:]
    assert ((head >= 0) & (head <= 1)).all()
    assert (tail >= 0).all()
    torch.testing.assert_close(head, torch.sigmoid(out.hidden_pre[:, :K]))
    torch.testing.assert_close(tail, torch.relu(out.hidden_pre[:, K:]))
    # the pre-activation takes both signs, so the activations really act
    assert (out.hidden_pre[:, :K] < 0).any() and (out.hidden_pre[:, K:] < 0).any()
    assert (tail == 0).any()


def test_relu_concept_activation() -> None:
    cfg = dataclasses.replace(PAPER, concept_activation="relu")
    out = _model(cfg)(_images(2))
    torch.testing.assert_close(out.hidden, torch.relu(out.hidden_pre))


def test_no_sampling_gives_the_mean() -> None:
    out = _model()(_images(3), sample=False)
    assert torch.equal(out.z, out.mu)


def test_sampling_uses_the_noise() -> None:
    model = _model()
    x = _images(3)
    out = model(x, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(out.mu.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.z, out.mu + torch.exp(0.5 * out.logvar) * eps)
    assert not torch.equal(out.z, out.mu)


def test_generator_makes_sampling_reproducible() -> None:
    model = _model()
    x = _images(3)
    a = model(x, generator=torch.Generator().manual_seed(42))
    b = model(x, generator=torch.Generator().manual_seed(42))
    c = model(x, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a.z, b.z)
    assert torch.equal(a.logits, b.logits)
    assert not torch.equal(a.z, c.z)


def test_decode_matches_forward() -> None:
    model = _model()
    out = model(_images(2), sample=False)
    logits, hidden = model.decode(out.mu)
    torch.testing.assert_close(logits, out.logits)
    torch.testing.assert_close(hidden, out.hidden)
    mu, logvar = model.encode(_images(2))
    torch.testing.assert_close(mu, out.mu)
    torch.testing.assert_close(logvar, out.logvar)


def test_batch_items_are_independent() -> None:
    model = _model()
    x = _images(4)
    full = model(x, sample=False)
    one = model(x[2:3], sample=False)
    torch.testing.assert_close(one.logits, full.logits[2:3], rtol=1e-5, atol=1e-5)


def test_too_few_concept_channels_raise() -> None:
    cfg = dataclasses.replace(PAPER, dec_channels=(64, 32, 16, 16))
    with pytest.raises(ConceptlibError, match="model.dec_channels.*fewer than the 18"):
        ConvVAE(cfg, K)
    ConvVAE(cfg, 16)  # exactly as many channels as concepts is enough


@pytest.mark.parametrize(
    "layer, size, channels", [(1, 7, 64), (2, 14, 32), (3, 28, 32), (4, 28, 24)]
)
def test_concept_layer_position(layer: int, size: int, channels: int) -> None:
    cfg = dataclasses.replace(PAPER, dec_channels=(64, 32, 32, 24), concept_layer=layer)
    model = _model(cfg)
    assert model.concept_size == size
    out = model(_images(2))
    assert out.hidden.shape == (2, channels, size, size)
    assert out.logits.shape == (2, 1, 28, 28)
    head = out.hidden[:, :K]
    assert ((head >= 0) & (head <= 1)).all()


@pytest.mark.parametrize("kernel", [1, 3, 7])
def test_bottleneck_kernel(kernel: int) -> None:
    cfg = dataclasses.replace(PAPER, bottleneck_kernel=kernel)
    out = _model(cfg)(_images(2))
    assert out.mu.shape == (2, 4, 7, 7)
    assert out.logits.shape == (2, 1, 28, 28)


def test_fully_convolutional() -> None:
    model = _model()
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_count_parameters() -> None:
    model = _model()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    wider = _model(dataclasses.replace(PAPER, latent_channels=8))
    assert count_parameters(wider) > count_parameters(model)


def test_gradients_reach_every_parameter() -> None:
    model = _model().train()
    out = model(_images(2), generator=torch.Generator().manual_seed(0))
    (out.logits.sum() + out.hidden[:, :K].sum() + out.logvar.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_decode_from_the_concept_layer_reproduces_the_decoding() -> None:
    model = _model()
    z = torch.randn(3, 4, 7, 7, generator=torch.Generator().manual_seed(1))
    logits, hidden = model.decode(z)
    h = model.concept_act(model.decode_to(z))
    torch.testing.assert_close(h, hidden, rtol=0, atol=0)
    torch.testing.assert_close(model.decode_from(h), logits, rtol=0, atol=0)


def test_mean_rows_decode_the_posterior_mean() -> None:
    model = _model()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    rows = torch.tensor([1, 3])
    out = model(x, mean_rows=rows)
    torch.testing.assert_close(out.mean_hidden_pre, model.decode_to(out.mu[rows]))
    torch.testing.assert_close(out.mean_hidden, model.concept_act(out.mean_hidden_pre))
    assert model(x).mean_hidden is None


def test_detached_mean_sends_no_gradient_to_the_encoder() -> None:
    model = _model()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    for detach, expect in ((True, False), (False, True)):
        model.zero_grad()
        out = model(x, mean_rows=torch.tensor([0, 1]), detach_mean=detach)
        out.mean_hidden_pre.sum().backward()
        grad = model.encoder[0].weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect


@pytest.mark.parametrize("shape", [(3, 32, 28, 28), (3, 8, 6, 6)])
def test_concept_activation_equals_slicing(shape) -> None:
    """Sigmoid on the first K channels, ReLU on the rest: values and gradients.

    At the concept layer's shape (28 x 28 maps, whole vector widths) the result
    equals slicing and concatenating bit for bit, so fp32 runs trained before
    the rewrite are reproduced exactly; elsewhere to rounding.
    """
    from conceptlib.model.vae import ConceptActivation

    k = 18 if shape[1] == 32 else 5
    act = ConceptActivation(k, "sigmoid")
    h = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    a, b = h.clone().requires_grad_(), h.clone().requires_grad_()
    ya = act(a)
    yb = torch.cat([torch.sigmoid(b[:, :k]), torch.relu(b[:, k:])], dim=1)
    g = torch.randn_like(h)
    ya.backward(g)
    yb.backward(g)
    if shape[-1] == 28:
        assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad)
    torch.testing.assert_close(ya, yb, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)
