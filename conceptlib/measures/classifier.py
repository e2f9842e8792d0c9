"""A small CNN classifier, trained by the project as an *independent* measuring stick.

A multi-label concept classifier trained only to name the concepts, on the concept
model's training images (:func:`train_multilabel`), gives the ceiling that the
catalogue itself sets on concept identification (some concepts are nearly the same
stroke: the lower bowls of 3 and 5); a 10-way digit classifier reads the digits
that operators build. Neither is part of any VAE. See chapter ``ch-vocabulary``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, cross_entropy
from tqdm.auto import tqdm

from conceptlib.data.catalogue import shift_images
from conceptlib.measures.vocab import top_k


class SmallCNN(nn.Module):
    """Two conv blocks and two dense layers: ``(B, 1, 28, 28)`` -> class logits; in
    channels_last, 1.6x faster than NCHW on the CPU (the same arithmetic)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14 x 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7 x 7
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )  # fmt: skip
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


#: Training epochs of :func:`train_classifier` by default (no validation stop).
NUM_EPOCHS = 4
#: :func:`train_multilabel`: at most this many epochs, stopping after PATIENCE
#: epochs in which the validation score rose by less than MIN_DELTA (the learning
#: rate divided by 3 after every second such epoch in a row); images shifted by up
#: to SHIFT px.
MAX_EPOCHS, PATIENCE, MIN_DELTA, SHIFT = 40, 4, 0.002, 2


def _steps(
    model: SmallCNN, opt: torch.optim.Optimizer, loss_fn, xt: torch.Tensor,
    yt: torch.Tensor, batches,
) -> None:  # fmt: skip
    """One ``opt`` step on ``loss_fn(logits, targets)`` per batch of indices into
    the uint8 images ``xt`` and their targets ``yt``."""
    for idx in batches:
        loss = loss_fn(model(xt[idx].unsqueeze(1).float().div_(255.0)), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def train_classifier(
    x: np.ndarray, y: np.ndarray, num_classes: int, num_epochs: int = NUM_EPOCHS,
    batch_size: int = 128, lr: float = 1e-3, seed: int = 0, progress: bool = False,
) -> SmallCNN:  # fmt: skip
    """Train a :class:`SmallCNN` with Adam on ``(N, 28, 28)`` uint8 images ``x``
    and labels ``y`` in ``0 .. num_classes - 1`` (``seed``: initialisation and
    data order); the trained model, in eval mode on the CPU."""
    torch.manual_seed(seed)
    model = SmallCNN(num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(np.asarray(x, dtype=np.uint8))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(num_epochs):
        order = torch.randperm(len(xt), generator=gen).split(batch_size)
        desc = f"classifier epoch {epoch + 1}"
        batches = tqdm(order, desc=desc, disable=not progress)
        _steps(model, opt, cross_entropy, xt, yt, batches)
    return model.eval()


@torch.inference_mode()
def predict(model: SmallCNN, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """``(N, num_classes)`` softmax probabilities of ``(N, 28, 28)`` uint8 images."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.asarray(x[start : start + batch_size], np.uint8))
        out.append(torch.softmax(model(xb.unsqueeze(1).float() / 255.0), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def top_accuracy(probs: np.ndarray, concepts: np.ndarray) -> float:
    """Fraction of rows of ``(N, C)`` scores whose P classes in ``(N, P)``
    ``concepts`` are exactly their top P."""
    top = np.sort(top_k(probs, concepts.shape[1]), axis=1)
    return float((top == np.sort(concepts, axis=1)).all(1).mean())


def multi_hot(concepts: np.ndarray, k: int) -> np.ndarray:
    """``(N, K)`` float32 targets from ``(N, P)`` concept indices (-1: none)."""
    out = np.zeros((len(concepts), k), np.float32)
    rows, slots = np.nonzero(concepts >= 0)
    out[rows, concepts[rows, slots]] = 1.0
    return out


def train_multilabel(
    x: np.ndarray, targets: np.ndarray, score, seed: int = 0,
    max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE, shift: int = SHIFT,
    progress: bool = False,
) -> tuple[SmallCNN, dict[str, float]]:  # fmt: skip
    """Train a multi-label :class:`SmallCNN` (BCE on each of the K outputs) on
    ``(N, 28, 28)`` uint8 images shifted anew each epoch by up to ``shift`` px,
    until ``score(model)`` (on validation data; higher is better) has not risen by
    :data:`MIN_DELTA` for ``patience`` epochs, dividing the learning rate by 3
    after every second epoch in a row without such a rise; the model of the last
    such rise (eval mode, CPU) and ``{"epochs", "best_epoch", "val_score"}``."""
    torch.manual_seed(seed)
    model = SmallCNN(targets.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    yt = torch.from_numpy(np.asarray(targets, np.float32))
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng([seed, 7])
    best, best_state, best_epoch, epoch = -np.inf, None, 0, 0
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, "max", factor=1 / 3, patience=1, threshold=MIN_DELTA, threshold_mode="abs"
    )
    for epoch in range(1, max_epochs + 1):
        xt = torch.from_numpy(shift_images(x, rng, shift)[0] if shift else x)
        order = torch.randperm(len(xt), generator=gen).split(128)
        batches = tqdm(order, desc=f"ceiling epoch {epoch}", disable=not progress)
        _steps(model.train(), opt, binary_cross_entropy_with_logits, xt, yt, batches)
        now = score(model.eval())
        plateau.step(now)
        if now >= best + MIN_DELTA:
            best, best_epoch = now, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    info = {"epochs": epoch, "best_epoch": best_epoch, "val_score": float(best)}
    return model.eval(), info
