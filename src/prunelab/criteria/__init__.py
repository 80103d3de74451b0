"""Pruning criteria. Each module here registers its criteria (`registry.register`) and is
found by `registry.registered` without being listed anywhere: a new built-in is one file.

- `first_order`: saliencies from the loss gradient (|∂L/∂w|, Taylor, Fisher);
- `second_order`: Optimal Brain Surgeon, a procedure that also updates what is left;
- `during_finetuning`: gradual magnitude and movement pruning, which cut while the model
  fine-tunes (the procedure is `gradual`);
- `magnitude_activity`: the weights alone, or with the activations they see (Wanda);
  the random control.

A criterion maps a model and calibration batches (from the *training* split) to
importance scores, higher means keep; what is cut, and how many, is decided elsewhere
(`masks`, `granularity`). This package's `__init__` imports none of them, so the code
every criterion shares (the procedure's keys, `codedeps`) does not change when one is added.
"""
