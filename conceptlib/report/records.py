"""The one accessor for recorded results: ``recorded("quick")`` (``metrics.json``),
``recorded("quick/operators")``, :func:`recorded_path` (``"sweeps/quick-val"``) and
:func:`recorded_checkpoint`, under ``$CONCEPTLIB_RESULTS`` or else the checkout's
``results/`` (the same from ``book/`` and from the repository root)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conceptlib.errors import ConceptlibError
from conceptlib.report.stats import plural

Root = str | os.PathLike | None


def results_root() -> Path:
    """``$CONCEPTLIB_RESULTS``, else the ``results/`` folder of this checkout."""
    env = os.environ.get("CONCEPTLIB_RESULTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "results"


def recorded_path(name: str, root: Root = None) -> Path:
    """The file or folder ``name`` (e.g. ``"sweeps/quick-val"``) of the records."""
    return Path(root or results_root()) / name


def recorded_checkpoint(profile: str, variant: str, root: Root = None) -> Path:
    """The recorded checkpoint of ``variant`` trained at ``profile``."""
    return recorded_path(f"{profile}/checkpoints/{variant}.pt", root)


def _read_json(path: Path, missing: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConceptlibError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConceptlibError(f"{path}: cannot read results ({exc})") from None


def recorded(name: str, root: Root = None) -> Any:
    """The parsed JSON of a record: ``"quick"`` is ``quick/metrics.json`` (by
    :func:`read_metrics`), ``"quick/operators"`` is ``quick/operators.json``;
    :class:`ConceptlibError` if there is no such record or it is not JSON."""
    if "/" not in name:
        return read_metrics(recorded_path(name, root))
    return _read_json(recorded_path(f"{name}.json", root), "no such record")


def load_recorded(profile: str, root: Root = None) -> dict | None:
    """The committed ``<root>/<profile>/metrics.json``, or None if there is none."""
    path = recorded_path(profile, root) / "metrics.json"
    return read_metrics(path) if path.is_file() else None


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metrics.json`` at ``path`` (the file, or the folder holding it);
    :class:`ConceptlibError` if it is missing or not a metrics file."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    metrics = _read_json(path, "no such metrics file")
    if not isinstance(metrics, dict) or "variants" not in metrics:
        raise ConceptlibError(
            f"{path}: not a metrics file of `conceptlib reproduce` (no variants)"
        )
    return upgrade_recorded(metrics)


def upgrade_recorded(metrics: dict[str, Any]) -> dict[str, Any]:
    """Name the variants of runs recorded before ``concept_paper`` existed: the
    ``concept`` variant then trained the paper's recipe, ``concept_paper`` now."""
    variants = metrics.get("variants", {})
    if "concept_paper" in variants or "concept" not in variants:
        return metrics
    for tree in [metrics, *(metrics.get("per_seed") or [])]:
        for key in ("variants", "variants_std", "epochs", "runs"):
            if "concept" in (tree.get(key) or {}):
                tree[key]["concept_paper"] = tree[key].pop("concept")
        for key in ("alignment", "alignment_std"):  # measured on that model too
            if key in tree:
                tree[f"{key}_concept_paper"] = tree.pop(key)
    metrics["renamed"] = {"concept": "concept_paper"}
    return metrics


def recorded_runs(
    root: Root = None, profiles: Sequence[str] = ("paper", "quick")
) -> dict[str, dict[str, Any]]:
    """The recorded runs of ``profiles`` that exist, named for a table's columns,
    e.g. ``recorded quick (3 seeds)``."""
    runs = {p: load_recorded(p, root) for p in profiles}
    return {
        f"recorded {p} ({plural(len(m.get('seeds', [])) or 1, 'seed')})": m
        for p, m in runs.items()
        if m is not None
    }


def recorded_loop_speeds(root: Root = None) -> dict[str, float]:
    """Training-loop throughput (img/s) per configuration at batch 128, e.g.
    ``{"fp32 NCHW": 866.0}``, from ``benchmarks/train_loop.txt``; {} if absent."""
    path = recorded_path("benchmarks/train_loop.txt", root)
    lines = path.read_text().splitlines() if path.is_file() else []
    return {
        " ".join(f[:2]): float(f[3])
        for f in map(str.split, lines)
        if len(f) > 3 and f[2] == "b128" and f[3].isdigit()
    }


def recorded_loop_speed(root: Root = None) -> float | None:
    """The fastest of :func:`recorded_loop_speeds` (img/s, batch 128)."""
    return max(recorded_loop_speeds(root).values(), default=None)
