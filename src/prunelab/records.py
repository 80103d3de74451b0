"""The records stages hand each other, typed, each written and read through one function.

A search choice (`search/<method>-<granularity>.json`) is what the prune and finetune
stages repeat: the chosen trial's sparsity, fine-tuning lr and seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from prunelab.errors import PrunelabError
from prunelab.fileio import read_json, write_json


@dataclass(frozen=True)
class SearchChoice:
    """The trial a method's search chose, and how the study went."""

    study: str
    trial: int
    trial_key: str  # its key in the study's queue ("grid-3", "refine-1")
    sparsity: float  # the target it pruned to
    lr: float | None  # the searched fine-tuning lr; None: finetune.lr
    finetune_seed: int  # the trial's fine-tuning (and between-rounds) seed
    val_accuracy: float
    realised_sparsity: float
    baseline_val_accuracy: float
    within_allowed_drop: bool
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    storage: str  # where the study is, never with a password


def write_choice(path: Path, choice: SearchChoice) -> None:
    write_json(path, asdict(choice))


def read_choice(path: Path) -> SearchChoice:
    data = read_json(path)
    names = {f.name for f in fields(SearchChoice)}
    if set(data) != names:
        raise PrunelabError(
            f"{path} is not a search choice of this version (missing {sorted(names - set(data))}, "
            f"unknown {sorted(set(data) - names)}): run `dvc repro search` to write it again")
    return SearchChoice(**data)
