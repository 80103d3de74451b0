"""Models logged to MLflow (and registered on its Models page) by the stage commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def log_torch_model(model: nn.Module, name: str = "model",
                    registered_model_name: str | None = None) -> None:
    """Log through mlflow.pytorch in its "pt2" format (torch.export: no pickle), and
    register it under `registered_model_name` if given (the Models page).

    Naming the requirements skips MLflow's slow environment inference. MLflow's check that
    the saved model serves the input example reloads it through pyfunc, most of a finetune
    stage's time (BENCHMARKS.md): test_pipeline loads logged models with
    `mlflow.pytorch.load_model` instead, so that check is off.
    """
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    device = next(model.parameters()).device
    example = torch.rand(2, 1, 28, 28, device=device)
    with torch.no_grad():
        logits = model.eval()(example)
    with _no_requirement_check():
        mlflow.pytorch.log_model(
            model,
            name=name,
            serialization_format="pt2",
            input_example=example.cpu().numpy(),
            signature=infer_signature(example.cpu().numpy(), logits.cpu().numpy()),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "prunelab"],
            registered_model_name=registered_model_name,
            validate_serving_input=False,
        )


@contextmanager
def _no_requirement_check() -> Iterator[None]:
    """MLflow checks the requirements we name against every installed distribution (a
    scan of site-packages) only to warn on a mismatch; ours are read from the running
    torch, so they cannot mismatch. Skipped where MLflow has that check under this name
    (mlflow.utils.environment, 2.x-3.x); elsewhere it simply runs."""
    from unittest import mock

    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    if not hasattr(environment, name):
        yield
        return
    with mock.patch.object(environment, name, lambda *a, **k: None):
        yield
