"""What a criterion is, whatever its family: settings bound when it is built, scoring in
one call (Torch-Pruning's importance objects), and for a surgeon the update it makes to
what is left once the cut is chosen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from torch import Tensor

from prunelab.criteria.scoring import Batches, Scores, UnitScores
from prunelab.models import Net

S = TypeVar("S", Scores, UnitScores)

# (the model before the cut, the cut model, what was kept, calibration batches): updates
# the cut model's remaining weights in place. `kept` maps a weight's name to its bool mask,
# or "units.<i>" to hidden layer i's keep-vector (as `granularity.Pruned` holds them).
Refit = Callable[[Net, Net, dict[str, Tensor], Batches], None]
# (the model fine-tuning, whose gated weights read as W ⊙ M; the movement scores by weight
# name): what a method that prunes during fine-tuning ranks by at a mask update (`gradual`).
Live = Callable[[Net, dict[str, Tensor]], S]


@dataclass(frozen=True)
class Criterion(Generic[S]):
    """A criterion with its settings bound. `score(model, batches)`: higher means keep.
    `refit`: a surgeon's update of the remaining weights after the cut (None: the cut
    model keeps its weights as they were). `scope`: the allocation over layers the
    method's paper prescribes, overriding `prune.scope` (None: it follows it). `live`:
    set for a method that prunes during fine-tuning instead of before it (`gradual`);
    its `score` is then what it would rank by at the trained model (for the oracle)."""

    score: Callable[[Net, Batches], S]
    refit: Refit | None = None
    scope: str | None = None
    live: Live[S] | None = None


def plain(score: Callable[[Net, Batches], S]) -> Callable[[object, int], Criterion[S]]:
    """A criterion that is only a score, whatever its settings and seed."""
    return lambda _settings, _seed: Criterion(score)
