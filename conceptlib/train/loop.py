"""Training: Adam, seeded and resumable, with a run cache keyed by the config hash.

A run lives in ``<cache>/<variant>-<hash>/``: ``config.yaml``, ``history.json``,
``checkpoint.pt`` (after every epoch; the previous one kept as
``checkpoint.prev.pt``) and, once finished, ``model.pt``. Epoch ``e``'s data order
and noise come from generators seeded by ``(seed, e)``: a resumed run is bitwise
identical to an uninterrupted one on the same kernels. See chapter ``ch-training``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from conceptlib.config import (
    FIRST_CONCEPT_LABEL,
    ExperimentConfig,
    config_hash,
    dump_config,
    to_dict,
)
from conceptlib.data.mnist import to_input
from conceptlib.errors import ConceptlibError
from conceptlib.files import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    atomic_write_text,
    load_checkpoint,
)
from conceptlib.model import variants
from conceptlib.model.losses import (
    part_targets,
    present_concepts,
    total_loss,
    union_loss,
)
from conceptlib.model.vae import ConvVAE, load_weights, ready
from conceptlib.train.runtime import is_main, resolve_device, resolve_precision

#: Per-epoch means in the history; runs with a union term add ``union``.
LOSS_PARTS = ("loss", "recon", "kl", "concept")
#: Config keys added after runs were recorded, and the value that trains as before.
NEUTRAL_KEYS = (("concepts", "train_shift", 0), ("loss", "union_weight", 0.0))


def _epoch_generator(seed: int, epoch: int, stream: int, device="cpu"):
    seeded = seed * 1_000_003 + epoch * 101 + stream
    return torch.Generator(device=device).manual_seed(seeded)


def build_model(cfg: ExperimentConfig, num_concepts: int) -> ConvVAE:
    """A freshly initialised model, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return ConvVAE(cfg.model, num_concepts)


@dataclass
class Run:
    """A trained variant: ``model`` (:func:`ready`, on the training device), per-epoch
    ``history``, folder ``path``, hash ``key``, ``loaded`` from the cache or not."""

    model: ConvVAE
    history: list[dict[str, float]]
    path: Path
    key: str
    variant: str
    loaded: bool


def run_key(cfg: ExperimentConfig, variant: str) -> str:
    """Hash of everything that determines the trained weights of ``variant``: not
    clustering, the measures, the profile's name or the held-out image counts."""
    payload = to_dict(cfg)
    del payload["cluster"], payload["eval"], payload["train"]["eval_batch_size"]
    del payload["concepts"]["test_per_concept"], payload["concepts"]["probe_size"]
    payload["profile"] = None
    for section, key, neutral in NEUTRAL_KEYS:  # keys added later: at their neutral
        if payload[section].get(key) == neutral:  # value, runs made before them
            payload[section].pop(key)  # keep their keys
    variants.get(variant).key_payload(payload)
    if dist.is_initialized() and dist.get_world_size() > 1:
        # another data order (DistributedSampler): not the single-process run
        payload["world_size"] = dist.get_world_size()
    return config_hash(payload)


def _ramp(progress: float, warm: float) -> float:
    return min(1.0, progress / warm) if warm > 0 else 1.0


def kl_weight(cfg: ExperimentConfig, progress: float) -> float:
    """beta after ``progress`` epochs: linear warm-up over ``kl_warmup_epochs``."""
    return cfg.loss.beta * _ramp(progress, cfg.loss.kl_warmup_epochs)


def concept_weight(cfg: ExperimentConfig, progress: float) -> float:
    """lambda after ``progress`` epochs: linear warm-up, ``concept_warmup_epochs``."""
    return cfg.loss.concept_weight * _ramp(progress, cfg.loss.concept_warmup_epochs)


def _batches(num: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Shuffled index batches of ``epoch``, seeded by ``(seed, epoch)``; under DDP
    each rank's share, in batches of ``batch_size // world`` (same global batch)."""
    if dist.is_initialized():
        # the sampler shuffles with seed + epoch: spread seeds so (seed, epoch) differ
        sampler = DistributedSampler(
            range(num), shuffle=True, seed=seed * 1_000_003, drop_last=True
        )
        sampler.set_epoch(epoch)
        world = dist.get_world_size()
        if batch_size % world:
            raise ConceptlibError(
                f"train.batch_size={batch_size} is not a multiple of the {world} "
                "processes: the global batch would change"
            )
        perm = torch.tensor(list(sampler), dtype=torch.long)
        batch_size //= world
    else:
        perm = torch.randperm(num, generator=_epoch_generator(seed, epoch, 0))
    return list(perm.split(batch_size))


def train_step(
    net: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor,
    yb: torch.Tensor, cfg: ExperimentConfig, num_concepts: int, use_concept: bool,
    beta: float, noise: torch.Generator | None, autocast: torch.autocast,
    weight: float | None = None, target: torch.Tensor | None = None,
    present: torch.Tensor | None = None,
):  # fmt: skip
    """One optimisation step (forward under ``autocast``, loss, backward, Adam); the
    batch's :class:`~conceptlib.model.losses.LossParts`. ``weight``: the concept
    weight now (default ``cfg.loss.concept_weight``); ``target``: per-pixel concept
    targets (default: exclusive); ``present``: each concept image's concepts, for the
    union term (default: from the labels). The benchmarks time this."""
    decode = cfg.loss.concept_decode
    mean_rows = None
    if use_concept and decode != "z":
        mean_rows = (yb >= FIRST_CONCEPT_LABEL).nonzero().squeeze(1)
    with autocast:
        detach = decode == "mu_detached"
        out = net(xb, generator=noise, mean_rows=mean_rows, detach_mean=detach)
        union = None
        if use_concept and cfg.loss.union_weight > 0:
            if present is None:
                present = present_concepts(yb, None, num_concepts)
            model = net.module if hasattr(net, "module") else net
            same = out.mean_hidden if decode == "mu" else None  # layers of mu
            union = union_loss(model, out.mu, xb, yb, present, same)
    parts = total_loss(
        out, xb, yb, cfg.loss, num_concepts, use_concept, beta, weight, target
    )
    if union is not None:
        parts.total = parts.total + cfg.loss.union_weight * union
        parts.union = union.detach()
    opt.zero_grad(set_to_none=True)
    parts.total.backward()
    opt.step()
    return parts


@dataclass
class _Epochs:
    """What every epoch of :func:`train_vae` reads (tensors on ``device``;
    ``progress``: this process shows it)."""

    net: torch.nn.Module
    opt: torch.optim.Optimizer
    cfg: ExperimentConfig
    variant: variants.Variant
    x: torch.Tensor
    y: torch.Tensor
    parts: tuple[torch.Tensor, torch.Tensor] | None  # concept variants' only
    num_concepts: int
    size: int  # of the concept layer
    device: torch.device
    autocast: torch.autocast
    progress: bool

    def run(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch``; its history record (means over all ranks)."""
        cfg, tc, device = self.cfg, self.cfg.train, self.device
        self.net.train()
        order = _batches(len(self.x), tc.batch_size, cfg.seed, epoch)
        rank = dist.get_rank() if dist.is_initialized() else 0
        noise = _epoch_generator(cfg.seed, epoch, 1 + 1000 * rank, device)
        # loss sums stay on the device: one host sync every 20 steps, not 5 per step
        names = LOSS_PARTS + (("union",) if self._union else ())
        acc = torch.zeros(len(names), dtype=torch.float64, device=device)
        seen, t0 = 0, time.perf_counter()
        desc = f"{self.variant.name} epoch {epoch + 1}/{tc.num_epochs}"
        quiet = not self.progress
        bar = tqdm(order, desc=desc, disable=quiet, leave=False, file=sys.stderr)
        for i, idx in enumerate(bar):
            idx, at = idx.to(device), epoch + i / len(order)
            xb = to_input(self.x[idx], device, tc.channels_last)
            target = present = None
            if self.parts is not None:
                rows = idx[self.y[idx] >= FIRST_CONCEPT_LABEL]
                pb = self.parts[0][rows].float().div_(255.0)  # (Bc, P, 28, 28)
                pc = self.parts[1][rows]
                target = part_targets(pb, pc, self.num_concepts, self.size)
                if self._union:
                    present = present_concepts(self.y[rows], pc, self.num_concepts)
            out = train_step(
                self.net, self.opt, xb, self.y[idx], cfg, self.num_concepts,
                self.variant.concept_loss, kl_weight(cfg, at), noise, self.autocast,
                concept_weight(cfg, at), target, present,
            )  # fmt: skip
            seen += len(idx)
            parts = [out.total.detach(), out.recon, out.kl, out.concept, out.union]
            acc += torch.stack(parts[: len(names)]).double() * len(idx)
            if i % 20 == 0 or i == len(order) - 1:
                self._show(bar, acc.tolist(), seen, t0, epoch)
        return self._record(acc, seen, time.perf_counter() - t0, epoch, names)

    @property
    def _union(self) -> bool:
        """Whether this run trains with the union term (a history column)."""
        return self.variant.concept_loss and self.cfg.loss.union_weight > 0

    def _show(self, bar, sums: list[float], seen: int, t0: float, epoch: int) -> None:
        if not all(map(math.isfinite, sums)):  # a NaN stays in the sums
            raise ConceptlibError(
                f"{self.variant.name}: loss is {sums[0]} in epoch {epoch + 1}: "
                "lower train.lr or loss.concept_weight"
            )
        loss, recon, kl, concept = (s / seen for s in sums[:4])
        speed = seen / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(loss=f"{loss:.1f}", recon=f"{recon:.1f}", kl=f"{kl:.1f}",
                        concept=f"{concept:.2f}", img_s=f"{speed:.0f}")  # fmt: skip

    def _record(self, acc, seen, seconds, epoch, names) -> dict[str, float]:
        if dist.is_initialized():  # epoch means over all ranks' images
            both = torch.cat([acc, acc.new_tensor([seen])])
            dist.all_reduce(both)  # on the training device: nccl has no CPU tensors
            acc, seen = both[:-1], int(both[-1].item())
        sums = dict(zip(names, acc.tolist()))
        record = {"epoch": epoch + 1, **{k: v / max(seen, 1) for k, v in sums.items()}}
        record.update(images=seen, seconds=seconds, img_per_s=seen / max(seconds, 1e-9))
        if self.progress:
            tqdm.write(
                f"{self.variant.name} epoch {epoch + 1} | loss {record['loss']:.1f} "
                f"(recon {record['recon']:.1f}, kl {record['kl']:.1f}, "
                f"concept {record['concept']:.2f}) | {seconds:.1f} s | "
                f"{record['img_per_s'] / 1000:.1f}k img/s",
                file=sys.stderr,
            )
        return record


def train_vae(
    cfg: ExperimentConfig, variant: str, x: torch.Tensor, y: torch.Tensor,
    num_concepts: int, run_dir: Path | None = None, device: torch.device | None = None,
    progress: bool = True, parts: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[ConvVAE, list[dict[str, float]]]:  # fmt: skip
    """Train one variant under its config (:func:`~conceptlib.config.variant_config`)
    on ``x`` (``(N, 28, 28)`` uint8) and labels ``y`` (10+: concept) with K concept
    channels, checkpointing each epoch to ``run_dir`` (None: nothing is written) and
    resuming from it if possible; the model (eval mode) and its per-epoch history.
    ``parts``: ``(N, P, 28, 28)`` uint8 ink of each image's concept parts and their
    ``(N, P)`` concepts (-1: none), for per-pixel targets (None: exclusive ones)."""
    device = device or resolve_device()
    cfg = resolve_precision(cfg, device)
    tc, progress = cfg.train, progress and is_main()
    model = build_model(cfg, num_concepts).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    state = resume_state(run_dir) if run_dir is not None else None
    history, start = [], 0
    if state is not None:
        load_weights(model, state["model"], str(run_dir))
        opt.load_state_dict(state["optimizer"])
        history, start = json.loads(state["history"]), int(state["epoch"])
        if progress:
            resuming = f"resuming {run_dir} after epoch {start} of {tc.num_epochs}"
            print(f"{variant}: {resuming} (its checkpoint)", file=sys.stderr)
    net = DistributedDataParallel(model) if dist.is_initialized() else model
    bf16 = tc.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    known = variants.get(variant)
    use_parts = parts is not None and known.concept_loss
    parts = tuple(t.to(device) for t in parts) if use_parts else None
    epochs = _Epochs(
        net, opt, cfg, known, x.to(device), y.to(device), parts, num_concepts,
        model.concept_size, device, autocast, progress,
    )  # fmt: skip
    for epoch in range(start, tc.num_epochs):
        history.append(epochs.run(epoch))
        if run_dir is not None and is_main():
            save_checkpoint(run_dir, model, opt, history, cfg, variant)
    model.eval()
    return model, history


def run_state(model, history, cfg, variant) -> dict[str, Any]:
    """What a checkpoint or ``model.pt`` holds: weights, history, config, variant."""
    return {
        "format": CHECKPOINT_FORMAT,
        "variant": variant,
        "epoch": len(history),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": json.dumps(history),
        "config": dump_config(cfg),
    }


def save_checkpoint(run_dir, model, opt, history, cfg, variant) -> None:
    """Atomically write ``checkpoint.pt`` (keeping the previous one) and history."""
    run_dir = Path(run_dir)
    last = run_dir / "checkpoint.pt"
    if last.exists():
        os.replace(last, run_dir / "checkpoint.prev.pt")
    state = run_state(model, history, cfg, variant)
    state["optimizer"] = opt.state_dict()
    atomic_torch_save(state, last)
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1))


def resume_state(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir`` (a corrupt last one: a warning,
    and the previous one), or None to start afresh."""
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            return load_checkpoint(path)
        except ConceptlibError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
    return None


def run_folder(
    cache_dir: str | os.PathLike, cfg: ExperimentConfig, variant: str, device=None
) -> Path:
    """Where the run cache keeps ``variant`` trained under ``cfg`` on ``device``:
    ``<cache_dir>/<variant>-<run_key>``, ``train.precision=auto`` resolved for the
    device first (so ``auto`` finds the run it trained)."""
    cfg = resolve_precision(cfg, device or resolve_device())
    return Path(cache_dir) / f"{variant}-{run_key(cfg, variant)}"


def get_or_train(
    cfg: ExperimentConfig, variant: str, x: torch.Tensor, y: torch.Tensor,
    num_concepts: int, cache_dir: str | os.PathLike = "runs",
    device: torch.device | None = None, progress: bool = True,
    parts: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Run:  # fmt: skip
    """Load ``variant`` from the run cache ``<cache_dir>/<variant>-<hash>``, or train
    it (resuming if interrupted); the other arguments as for :func:`train_vae`."""
    device = device or resolve_device()
    cfg = resolve_precision(cfg, device)
    run_dir = run_folder(cache_dir, cfg, variant, device)
    key = run_dir.name.removeprefix(f"{variant}-")  # run_key(cfg, variant)
    final = run_dir / "model.pt"
    done = [final.exists()]
    if dist.is_initialized():  # every rank follows rank 0: load or train together
        dist.broadcast_object_list(done, src=0)
    if done[0]:
        state = load_checkpoint(final)
        model = build_model(cfg, num_concepts)
        load_weights(model, state["model"], str(final))
        history = json.loads(state["history"])
        if progress and is_main():
            print(f"loaded run {variant}-{key} from {run_dir}", file=sys.stderr)
        return Run(ready(model.to(device)), history, run_dir, key, variant, True)
    if is_main():
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if (run_dir / "checkpoint.pt").exists():  # resuming a killed run:
                for tmp in run_dir.glob(".*.tmp"):  # its half-written files go
                    tmp.unlink(missing_ok=True)
            atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        except OSError as exc:
            msg = f"{run_dir}: cannot write run ({exc.strerror})"
            raise ConceptlibError(msg) from None
    model, history = train_vae(
        cfg, variant, x, y, num_concepts, run_dir, device, progress, parts
    )
    if is_main():
        atomic_torch_save(run_state(model, history, cfg, variant), final)
    if dist.is_initialized():
        dist.barrier()  # no rank moves on before model.pt is in place
    return Run(ready(model), history, run_dir, key, variant, False)
