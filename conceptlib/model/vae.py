"""The fully convolutional VAE of the paper's Figure 1, with the concept layer exposed.

Encoder: five conv layers, 28 -> 14 -> 7, emitting mean and log-variance *images*
``(latent_channels, 7, 7)``; no dense layer. Decoder: five transposed-conv layers
back to 28 x 28; decoder layer ``concept_layer`` carries one channel per concept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from conceptlib.config import ModelConfig
from conceptlib.data.mnist import IMAGE_SHAPE
from conceptlib.errors import ConceptlibError

#: Spatial size of the latent image: the input halved twice (28 -> 14 -> 7).
LATENT_SIZE = IMAGE_SHAPE[0] // 4
#: Spatial size of each decoder layer's output (layers 1..5).
DECODER_SIZES = (LATENT_SIZE, 2 * LATENT_SIZE, *(IMAGE_SHAPE[0],) * 3)


@dataclass
class VAEOutput:
    """What :meth:`ConvVAE.forward` returns: pre-sigmoid ``logits``, ``mu``,
    ``logvar`` and the sample ``z`` (``(B, L, 7, 7)``), the concept layer's activation
    ``hidden`` (concepts first) and ``hidden_pre``, and for ``mean_rows``, the layer
    decoded from ``z = mu`` (``mean_hidden``, ``mean_hidden_pre``; else None)."""

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    hidden: torch.Tensor
    hidden_pre: torch.Tensor
    mean_hidden: torch.Tensor | None = None
    mean_hidden_pre: torch.Tensor | None = None


class ConceptActivation(nn.Module):
    """Sigmoid (or ReLU) on the first ``num_concepts`` channels, ReLU on the rest."""

    def __init__(self, num_concepts: int, kind: str) -> None:
        super().__init__()
        self.num_concepts = num_concepts
        self.kind = kind

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        relu = torch.relu(h)
        if self.kind != "sigmoid":
            return relu
        # both activations whole, then a per-channel choice: no slice or concat
        # copies a (B, C, H, W) buffer; in fp32 bit for bit equal to slicing
        head = torch.arange(h.shape[1], device=h.device) < self.num_concepts
        return torch.where(head.view(1, -1, 1, 1), torch.sigmoid(h), relu)


def _conv(cls, c_in: int, c_out: int, resize: bool, kernel: int = 3) -> nn.Module:
    """A ``cls`` layer (Conv2d or ConvTranspose2d): halving or doubling the size
    (kernel 4, stride 2) when ``resize``, else keeping it."""
    if resize:
        return cls(c_in, c_out, kernel_size=4, stride=2, padding=1)
    return cls(c_in, c_out, kernel_size=kernel, stride=1, padding=kernel // 2)


class ConvVAE(nn.Module):
    """Fully convolutional VAE with a concept layer in the decoder (``cfg``: the
    config's model section; ``num_concepts``: channels with the concept loss)."""

    def __init__(self, cfg: ModelConfig, num_concepts: int) -> None:
        super().__init__()
        e1, e2, e3, e4 = cfg.enc_channels
        d1, d2, d3, d4 = cfg.dec_channels
        latent = cfg.latent_channels
        g = cfg.bottleneck_kernel  # 7: every 7 x 7 position sees the whole latent
        concept_channels = cfg.dec_channels[cfg.concept_layer - 1]
        if concept_channels < num_concepts:
            raise ConceptlibError(
                f"config key model.dec_channels: decoder layer {cfg.concept_layer} has "
                f"{concept_channels} channels, fewer than the {num_concepts} concepts"
            )
        self.cfg = cfg
        self.num_concepts = num_concepts
        conv, deconv = nn.Conv2d, nn.ConvTranspose2d
        self.encoder = nn.Sequential(
            _conv(conv, 1, e1, False), nn.ReLU(),  # (B, e1, 28, 28)
            _conv(conv, e1, e2, True), nn.ReLU(),  # (B, e2, 14, 14)
            _conv(conv, e2, e3, True), nn.ReLU(),  # (B, e3, 7, 7)
            _conv(conv, e3, e4, False, kernel=g), nn.ReLU(),  # (B, e4, 7, 7)
            _conv(conv, e4, 2 * latent, False),  # (B, 2L, 7, 7): mu and logvar
        )  # fmt: skip
        self.decoder = nn.ModuleList([
            _conv(deconv, latent, d1, False, kernel=g),  # (B, d1, 7, 7)
            _conv(deconv, d1, d2, True),  # (B, d2, 14, 14)
            _conv(deconv, d2, d3, True),  # (B, d3, 28, 28)
            _conv(deconv, d3, d4, False),  # (B, d4, 28, 28)
            _conv(deconv, d4, 1, False),  # (B, 1, 28, 28) logits
        ])  # fmt: skip
        self.concept_act = ConceptActivation(num_concepts, cfg.concept_activation)
        if cfg.concept_activation == "sigmoid":
            with torch.no_grad():
                # concept maps are sparse: start the concept channels near zero
                # (sigmoid(-4) = 0.018), not 0.5, lest the first updates turn all off
                self.decoder[cfg.concept_layer - 1].bias[:num_concepts].fill_(
                    cfg.concept_bias_init
                )

    @property
    def concept_size(self) -> int:
        """Spatial size of the concept layer (28 for layers 3 and 4)."""
        return DECODER_SIZES[self.cfg.concept_layer - 1]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, 28, 28)`` -> mean and log-variance, each ``(B, L, 7, 7)``."""
        return self.encoder(x).chunk(2, dim=1)

    def decode_to(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, L, 7, 7)`` -> the concept layer's *pre-activation* ``(B, C, H, W)``."""
        h = z
        for i in range(self.cfg.concept_layer):
            h = self.decoder[i](torch.relu(h) if i else h)
        return h

    def decode_from(self, hidden: torch.Tensor) -> torch.Tensor:
        """Concept-layer *activation* ``(B, C, H, W)`` -> logits ``(B, 1, 28, 28)``:
        the later layers only, so an edited concept layer decodes to an image."""
        h = hidden
        for i in range(self.cfg.concept_layer, len(self.decoder)):
            h = self.decoder[i](torch.relu(h) if i > self.cfg.concept_layer else h)
        return h

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, 7, 7)`` -> logits ``(B, 1, 28, 28)`` and the concept layer."""
        hidden = self.concept_act(self.decode_to(z))
        return self.decode_from(hidden), hidden

    def forward(
        self,
        x: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
        mean_rows: torch.Tensor | None = None,
        detach_mean: bool = False,
    ) -> VAEOutput:
        """Encode ``x`` (``(B, 1, 28, 28)`` in [0, 1]), sample ``z = mu + sigma * eps``
        (``eps`` from ``generator``; ``z = mu`` unless ``sample``), decode; the
        ``(R,)`` ``mean_rows`` also from ``z = mu`` (``loss.concept_decode``), or from
        ``mu.detach()`` with ``detach_mean``."""
        mu, logvar = self.encode(x)
        z = mu
        if sample:
            eps = torch.randn(
                mu.shape, generator=generator, device=mu.device, dtype=mu.dtype
            )
            z = mu + torch.exp(0.5 * logvar) * eps
        hidden_pre = self.decode_to(z)
        hidden = self.concept_act(hidden_pre)
        out = VAEOutput(self.decode_from(hidden), mu, logvar, z, hidden, hidden_pre)
        if mean_rows is not None:
            m = mu[mean_rows]
            out.mean_hidden_pre = self.decode_to(m.detach() if detach_mean else m)
            out.mean_hidden = self.concept_act(out.mean_hidden_pre)
        return out


def ready(model: nn.Module) -> nn.Module:
    """``model`` in eval mode; on the CPU in channels_last, which oneDNN runs 1.4-1.7x
    faster (the same arithmetic summed in another order: within about 1e-7)."""
    if next(model.parameters()).device.type == "cpu":
        with torch.inference_mode(False):  # weights that can still be trained
            model.to(memory_format=torch.channels_last)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_weights(
    model: ConvVAE, state_dict: dict[str, torch.Tensor], where: str
) -> None:
    """Load weights, with a one-line error when they belong to another architecture."""
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ConceptlibError(
            f"{where}: weights do not fit this architecture ({detail[:160]})"
        ) from None
