"""Thin stage commands: each wires library functions to files, MLflow and Optuna."""

from __future__ import annotations

from typing import Any, Protocol

from prunelab.config import Config


class _Objective(Protocol):
    last: Any
    last_key: str | None


class QueueWorker(Protocol):
    """A worker process's study and objective (the sweep's, the when stage's)."""

    objective: _Objective

    def run_one(self) -> bool: ...


def one_queued_point(w: QueueWorker, _: int) -> tuple[str, Any] | None:
    """(its queue key, the point) of one queued point computed by this worker, or None
    (the queue was empty, or the point was computed elsewhere)."""
    w.objective.last = w.objective.last_key = None
    w.run_one()
    o = w.objective
    return (o.last_key, o.last) if o.last is not None and o.last_key is not None else None


def method_tags(cfg: Config, stage: str, method: str, granularity: str) -> dict[str, str]:
    """A method's MLflow run tags: the stage, the method, its granularity and the family of
    what it reads (`loss gradient`, `input statistics`, `weights`; `control` for dense+ft
    and scratch, which are not criteria), so that the UI can filter one family."""
    from prunelab.methods import registry

    regs = registry(cfg)
    return {"stage": stage, "method": method, "granularity": granularity,
            "family": regs[method].family if method in regs else "control"}
