"""Compositional explanations of concept-layer channels (Mu and Andreas, 2020).

Where Network Dissection names a channel by its best single concept, a beam search
finds the logical *formula* over concept masks (``AND``, ``OR``, ``AND NOT``; at
most :data:`MAX_LENGTH` concepts) whose mask best overlaps the channel's strongest
activations on probes with known ink. A formula always beats one concept on the
probes searched, so both are also scored on held-out probes, where the formula's
gain may be negative. See chapter ``ch-operators``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from conceptlib.measures.probes import Probes, part_masks
from conceptlib.measures.vocab import flat_channels, on_threshold
from conceptlib.model.readout import ConceptModel, as_model, layer
from conceptlib.model.vae import ConvVAE

#: The binary operators of a formula, applied left to right.
OPS = ("AND", "OR", "AND NOT")
MAX_LENGTH = 3
BEAM = 5


@dataclass(frozen=True)
class Formula:
    """``c0 op1 c1 op2 c2 ...``, evaluated left to right."""

    first: int
    rest: tuple[tuple[str, int], ...] = ()

    def concepts(self) -> set[int]:
        return {self.first, *(c for _, c in self.rest)}

    def text(self, names: list[str] | tuple[str, ...]) -> str:
        out = names[self.first]
        for i, (op, c) in enumerate(self.rest):
            left = f"({out})" if i else out
            out = f"{left} {op} {names[c]}"
        return out

    def mask(self, concepts: torch.Tensor) -> torch.Tensor:
        """The formula's mask, from ``(K, P)`` bool concept masks."""
        out = concepts[self.first]
        for op, c in self.rest:
            out = _combine(out, op, concepts[c])
        return out


def _combine(mask: torch.Tensor, op: str, other: torch.Tensor) -> torch.Tensor:
    if op == "AND":
        return mask & other
    return mask | other if op == "OR" else mask & ~other


@dataclass(frozen=True)
class Explanation:
    """One channel's best formula and, for comparison, its best single concept,
    with their IoU on the searched probes and (``held_*``) on held-out ones."""

    channel: int
    formula: Formula
    iou: float
    single: int
    single_iou: float
    held_iou: float | None = None
    held_single_iou: float | None = None


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


class _Counts:
    """IoU of ``on`` with ``F op M_j`` for every concept j at once, from two
    matrix-vector products with the ``(K, P)`` concept masks M: ``M @ (F and on)``
    and ``M @ F`` (a few products per beam level instead of K mask operations)."""

    def __init__(self, on: torch.Tensor, concepts: torch.Tensor) -> None:
        self.on, self.m = on, concepts.double()
        self.on_n = float(on.sum())
        self.m_on = self.m @ on.double()  # |M_j and on|
        self.m_n = self.m.sum(1)  # |M_j|

    def grown(self, mask: torch.Tensor, op: str) -> torch.Tensor:
        """``(K,)`` IoU of ``on`` with ``mask op M_j``."""
        f_on, f_n = float((mask & self.on).sum()), float(mask.sum())
        a = self.m @ (mask & self.on).double()  # |F and M_j and on|
        b = self.m @ mask.double()  # |F and M_j|
        if op == "AND":
            inter, size = a, b
        elif op == "OR":
            inter, size = f_on + self.m_on - a, f_n + self.m_n - b
        else:  # AND NOT
            inter, size = f_on - a, f_n - b
        return inter / (size + self.on_n - inter).clamp_min(1)


def explain_channel(
    on: torch.Tensor, concepts: torch.Tensor, max_length: int = MAX_LENGTH,
    beam: int = BEAM, channel: int = 0,
) -> Explanation:  # fmt: skip
    """Beam search (``beam`` formulas kept per length, at most ``max_length``
    concepts) for the formula whose mask best matches ``on`` by IoU. ``on``: ``(P,)``
    bool, where the channel is on (all probe pixels, flattened); ``concepts``:
    ``(K, P)`` bool, each concept's ink there; ``channel``: recorded in the result."""
    # pixels outside the channel and every concept change no count: drop them
    keep = on | concepts.any(0)
    on, concepts = on[keep], concepts[:, keep]
    counts = _Counts(on, concepts)
    single = counts.grown(torch.zeros_like(on), "OR")  # each concept alone
    order = torch.argsort(single, descending=True)[:beam].tolist()
    frontier = [(float(single[c]), Formula(c), concepts[c]) for c in order]
    best = frontier[0]
    for _ in range(max_length - 1):
        found = []
        for _, formula, mask in frontier:
            for op in OPS:
                scores = counts.grown(mask, op)
                for c in torch.argsort(scores, descending=True)[: beam * 2].tolist():
                    if c not in formula.concepts():
                        grown = Formula(formula.first, (*formula.rest, (op, c)))
                        found.append((float(scores[c]), grown, mask, op, c))
        found.sort(key=lambda t: -t[0])
        frontier, seen = [], set()
        for score, f, mask, op, c in found:  # distinct masks only: A OR B = B OR A
            grown_mask = _combine(mask, op, concepts[c])
            key = hash(grown_mask.numpy().tobytes())
            if key not in seen:
                seen.add(key)
                frontier.append((score, f, grown_mask))
            if len(frontier) == beam:
                break
        if frontier and frontier[0][0] > best[0]:
            best = frontier[0]
    top = int(single.argmax())
    return Explanation(channel, best[1], best[0], top, float(single[top]))


def explain_layer(
    acts: torch.Tensor, concept_masks: torch.Tensor, max_length: int = MAX_LENGTH,
    held: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[Explanation]:  # fmt: skip
    """A formula for every channel of a layer, from its ``(N, C, H, W)``
    activations on probe images and ``(N, K, H, W)`` bool concept ink; with
    ``held`` (the same for other probes), each formula and single concept also
    scored there, the channels turned on at the searched probes' thresholds."""
    concepts, flat = flat_channels(concept_masks), flat_channels(acts).float()
    threshold = on_threshold(flat)[:, None]
    on = flat > threshold
    out = [
        explain_channel(on[c], concepts, max_length, channel=c) for c in range(len(on))
    ]
    if held is None:
        return out
    held_on = flat_channels(held[0]).float() > threshold
    held_concepts = flat_channels(held[1])
    return [
        replace(
            e,
            held_iou=_iou(e.formula.mask(held_concepts), held_on[e.channel]),
            held_single_iou=_iou(held_concepts[e.single], held_on[e.channel]),
        )
        for e in out
    ]


def explain_model(
    model: ConceptModel | ConvVAE, probes: Probes, num_probes: int = 1500
) -> list[Explanation]:
    """:func:`explain_layer` of a model's concept layer on the first ``num_probes``
    images of its ``isolated`` and ``pairs`` probes: the search reads the first
    half of each, the held-out scores the second."""
    net = as_model(model)
    halves: list[tuple[list, list]] = [([], []), ([], [])]
    for name in ("isolated", "pairs"):
        s = probes.sets[name]
        n = min(num_probes, len(s.x))
        for (acts, masks), (a, b) in zip(halves, ((0, n // 2), (n // 2, n))):
            acts.append(layer(net, s.x[a:b]))
            masks.append(part_masks(s, a, b, net.num_concepts, net.concept_size))
    (acts, masks), (h_acts, h_masks) = halves
    return explain_layer(
        torch.cat(acts), torch.cat(masks), held=(torch.cat(h_acts), torch.cat(h_masks))
    )


def summary(explanations: list[Explanation], num_concepts: int) -> dict[str, float]:
    """Mean IoU of the best formula and of the best single concept, over the
    concept channels and over the other channels; where scored on held-out
    probes, also their held-out IoUs and the held-out gain of the formula over
    the single concept (``gain_held_*``: mean over channels, with its standard
    error ``gain_held_se_*``)."""
    out = {}
    for name, sel in (
        ("concept_channels", [e for e in explanations if e.channel < num_concepts]),
        ("other_channels", [e for e in explanations if e.channel >= num_concepts]),
    ):
        if sel:
            out[f"formula_iou_{name}"] = float(np.mean([e.iou for e in sel]))
            out[f"single_iou_{name}"] = float(np.mean([e.single_iou for e in sel]))
        if sel and all(e.held_iou is not None for e in sel):
            held = np.array([e.held_iou for e in sel])
            single = np.array([e.held_single_iou for e in sel])
            gain = held - single
            se = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else 0.0
            out[f"formula_iou_held_{name}"] = float(held.mean())
            out[f"single_iou_held_{name}"] = float(single.mean())
            out[f"gain_held_{name}"] = float(gain.mean())
            out[f"gain_held_se_{name}"] = float(se)
    return out
