"""Thin stage commands: each wires library functions to files, MLflow and Optuna."""

from __future__ import annotations

from prunelab.config import Config


def method_tags(cfg: Config, stage: str, method: str, granularity: str) -> dict[str, str]:
    """A method's MLflow run tags: the stage, the method, its granularity and the family of
    what it reads (`loss gradient`, `input statistics`, `weights`; `control` for dense+ft
    and scratch, which are not criteria), so that the UI can filter one family."""
    from prunelab.methods import registry

    regs = registry(cfg)
    return {"stage": stage, "method": method, "granularity": granularity,
            "family": regs[method].family if method in regs else "control"}
