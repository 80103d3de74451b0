"""MLflow wiring for the stage commands (the library modules never import MLflow).

The embedded default store is `sqlite:///mlflow.db` in the project root; the environment
variable MLFLOW_TRACKING_URI (e.g. http://host:5000) wins over params.yaml. The store is
checked before a stage does any work, with retries off, so an unreachable server costs
seconds and a message naming the URI rather than minutes of silent retries.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from prunelab.errors import PrunelabError


class TrackingError(PrunelabError, RuntimeError):
    """The MLflow tracking store cannot be reached."""


def configure(default_uri: str) -> str:
    """Point MLflow at the store to use, check it answers, and return its URI."""
    # Fail fast: MLflow's default is several retries with exponential back-off.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_uri
    mlflow.set_tracking_uri(uri)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:
        raise TrackingError(
            f"cannot use the MLflow tracking store {uri!r}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
            "Start that server, fix MLFLOW_TRACKING_URI, or unset it to use the local "
            f"default {default_uri!r}."
        ) from None
    return uri


def flat_params(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.lr": 0.05, ...} from a nested pydantic dump, for mlflow.log_params."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = value
    return out


def log_torch_model(model: nn.Module, name: str = "model") -> None:
    """Log through mlflow.pytorch in its "pt2" format (torch.export: no pickle).

    Naming the requirements skips MLflow's slow environment inference.
    """
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    device = next(model.parameters()).device
    example = torch.rand(2, 1, 28, 28, device=device)
    with torch.no_grad():
        logits = model.eval()(example)
    mlflow.pytorch.log_model(
        model,
        name=name,
        serialization_format="pt2",
        input_example=example.cpu().numpy(),
        signature=infer_signature(example.cpu().numpy(), logits.cpu().numpy()),
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "prunelab"],
    )
