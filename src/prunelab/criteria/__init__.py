"""Pruning criteria, one module per family; each registers its entries here.

- `first_order`: saliencies from the loss gradient (|∂L/∂w|, Taylor, Fisher);
- `second_order`: Optimal Brain Surgeon, a procedure that also updates what is left;
- `during_finetuning`: gradual magnitude and movement pruning, which cut while the model
  fine-tunes (the procedure is `gradual`);
- `magnitude_activity`: the weights alone, or with the activations they see (Wanda);
  the random control.

A criterion maps a model and calibration batches (from the *training* split) to
importance scores, higher means keep; what is cut, and how many, is decided elsewhere
(`masks`, `granularity`). Adding a method touches its family's module and params.yaml.
"""

from __future__ import annotations

from prunelab.criteria import during_finetuning, first_order, magnitude_activity, second_order
from prunelab.criteria.base import Criterion, CriterionSettings, Factory
from prunelab.scoring import Scores, UnitScores

__all__ = ["WEIGHT_CRITERIA", "UNIT_CRITERIA", "Criterion", "CriterionSettings", "Factory"]

_FAMILIES = (first_order, second_order, during_finetuning, magnitude_activity)
# name -> builder of the criterion with its settings bound; each granularity
# (`granularity.py`) looks its criteria up in its own table.
WEIGHT_CRITERIA: dict[str, Factory[Scores]] = {
    k: v for family in _FAMILIES for k, v in family.WEIGHT.items()}
UNIT_CRITERIA: dict[str, Factory[UnitScores]] = {
    k: v for family in _FAMILIES for k, v in family.UNIT.items()}
