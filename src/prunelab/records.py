"""The records stages hand each other, typed, each written and read through one function.

A search choice (`search/<method>-<granularity>.json`) is what the prune and finetune
stages repeat: the chosen trial's sparsity, fine-tuning lr and seed. A sweep point
(`sweep/<method>-<granularity>.json`) is one pruned and fine-tuned model of the
comparison, or the reason it could not be realised; the sweep checks each as it makes it
(`as_point`), the report as it reads them, so a missing or misspelt key fails there.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, TypedDict, cast

import numpy as np
from typing_extensions import TypeIs  # in typing from Python 3.13

from prunelab.config import Config
from prunelab.errors import PrunelabError
from prunelab.methods import key, pairs, registry
from prunelab.plumbing.fileio import read_json, write_json


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


# The controls' methods (`prunelab.study.controls`): points of the sweep, never a criterion.
DENSE_FT, SCRATCH = "dense+ft", "scratch"
CONTROLS = (DENSE_FT, SCRATCH)


class PointKey(TypedDict):
    """What every point has: where it sits in the comparison."""

    method: str
    granularity: str
    ratio: float
    seed: int
    rounds: int  # prune/fine-tune rounds it reached its target in (1: one-shot)
    target_sparsity: float


class InfeasiblePoint(PointKey):
    infeasible: str  # why it could not be realised (e.g. a layer would be emptied)


class MatchedRandom(TypedDict, total=False):
    """The random control with a point's allocation, where a criterion allocates. (A base
    of its own: `NotRequired` in a postponed annotation is not seen by Python 3.11.)"""

    val_accuracy_before_matched_random: float
    test_accuracy_before_matched_random: float
    val_accuracy_matched_random: float
    test_accuracy_matched_random: float
    test_correct_matched_random: str
    val_correct_matched_random: str


class BeforeFinetuning(TypedDict, total=False):
    """The cut model right after the cut: absent for a method that prunes during
    fine-tuning (gmp, movement), which has no such model."""

    val_accuracy_before: float
    test_accuracy_before: float
    test_correct_before: str  # `pack_correct`, as `test_correct`
    val_correct_before: str


class SweepPoint(PointKey, MatchedRandom, BeforeFinetuning):
    """A pruned and fine-tuned model: what it cost (`metrics.pruning_metrics`), what it
    scored before and after fine-tuning, and which test images it got right."""

    threshold: float | None
    sparsity: float
    layer_sparsity: dict[str, float]
    parameters_remaining: int
    compression_ratio: float
    dense_flops: int
    flops: int
    effective_flops: int
    val_accuracy: float
    test_accuracy: float
    baseline_test_accuracy: float
    test_accuracy_drop: float
    test_images: int
    test_correct: str  # `pack_correct` of the per-image correctness on the test split
    # The same on the validation split: what a design (seeds for a power) is chosen from.
    val_images: int
    val_correct: str


Point = SweepPoint | InfeasiblePoint


class Series(NamedTuple):
    """One file of the sweep's points: a method (or control) at a granularity over its
    ratios, pruned in `rounds` rounds; `iterative`: a series of `sweep.iterative_rounds`,
    compared with the method's main series (in `finetune.rounds`, normally one-shot)."""

    method: str
    granularity: str
    ratios: list[float]
    rounds: int
    iterative: bool = False

    @property
    def name(self) -> str:  # its file's stem: "taylor-weight", "taylor-weight-3rounds"
        stem = key(self.method, self.granularity)
        return f"{stem}-{self.rounds}rounds" if self.iterative else stem


def sweep_series(cfg: Config) -> list[Series]:
    """Every series the sweep computes, one file of points each: each method at each
    granularity, then the controls (`sweep.controls`): dense+ft once per seed (filed as
    weight, ratio 1), scratch at every neuron ratio; then each method that cuts before
    fine-tuning (not gmp or movement, which cut gradually while they fine-tune) in each
    of `sweep.iterative_rounds`."""
    ratios, main = list(cfg.sweep.ratios), cfg.finetune.rounds
    have, regs = set(pairs(cfg)), registry(cfg)
    mine = [(m, g) for g in cfg.prune.granularities for m in cfg.prune.methods if (m, g) in have]
    out = [Series(m, g, ratios, main) for m, g in mine]
    if cfg.sweep.controls:
        out.append(Series(DENSE_FT, "weight", [1.0], 1))
        if "neuron" in cfg.prune.granularities:
            out.append(Series(SCRATCH, "neuron", ratios, 1))
    return out + [Series(m, g, ratios, k, iterative=True) for k in cfg.sweep.iterative_rounds
                  for m, g in mine if regs[m].kind != "during fine-tuning"]


def in_series(point: Point, series: Series) -> bool:
    """Whether `point` is one of `series`' (its file's)."""
    return (point["method"] == series.method and point["granularity"] == series.granularity
            and point["rounds"] == series.rounds)


def _keys(kind: type[Any]) -> tuple[set[str], set[str]]:
    """(required, optional) keys of a TypedDict."""
    return set(kind.__required_keys__), set(kind.__optional_keys__)


def as_point(record: Mapping[str, Any], where: str) -> Point:
    """`record` checked to be a point (every required key, no unknown one)."""
    kind: type[Any] = InfeasiblePoint if "infeasible" in record else SweepPoint
    required, optional = _keys(kind)
    missing, unknown = required - set(record), set(record) - required - optional
    if missing or unknown:
        raise PrunelabError(f"{where}: not a sweep point of this version (missing "
                            f"{sorted(missing)}, unknown {sorted(unknown)}): run "
                            "`dvc repro sweep` to compute it again")
    return cast(Point, dict(record))  # its keys checked just above


# TypeIs, not TypeGuard: a point that is not feasible is then known to be infeasible.
def is_feasible(point: Point) -> TypeIs[SweepPoint]:
    return "infeasible" not in point


def feasible(points: Iterable[Point]) -> list[SweepPoint]:
    return [p for p in points if is_feasible(p)]


def pack_correct(correct: np.ndarray) -> str:
    """Which images a model gets right, as text for JSON (1 bit per image)."""
    return base64.b64encode(np.packbits(correct.astype(bool)).tobytes()).decode()


def unpack_correct(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(bool)


def write_points(path: Path, method: str, granularity: str, points: list[Point]) -> None:
    write_json(path, {"method": method, "granularity": granularity, "points": points})


def read_points(path: Path) -> list[Point]:
    return [as_point(p, f"{path}, point {i}")
            for i, p in enumerate(read_json(path)["points"])]
