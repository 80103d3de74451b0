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


def only_methods(params: dict[str, Any], methods: list[str]) -> None:
    """Run only `methods`; a question may name only the methods run (`methods.check`), so
    the report's first question becomes the second method against the first."""
    params["prune"]["methods"] = methods
    params["report"]["questions"] = [{**params["report"]["questions"][0],
                                      "criteria": methods[1:2], "references": methods[:1]}]
