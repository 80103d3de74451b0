"""What the PostgreSQL benchmarks share: a params file of their own and an environment
that sends Optuna to the shared storage and MLflow to a throw-away store."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml


def params_and_env(params: dict[str, Any], path: Path, storage: str) -> dict[str, str]:
    """Write `params` to `path`; the environment for `prunelab --params path ...`."""
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return {**os.environ, "PRUNELAB_OPTUNA_STORAGE": storage,
            "MLFLOW_TRACKING_URI": f"sqlite:///{path.parent / 'mlflow.db'}",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
