"""Where the tracking and study stores live, and how their URLs may be shown."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """Where the default stores live: the main project, also for `dvc exp run --temp` and
    queued experiments, which run in a temporary copy (DVC sets DVC_ROOT to the project
    they came from), so that their MLflow runs and Optuna studies are not thrown away."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def mask_url(url: str) -> str:
    """A database URL with its password hidden (`***`), for every file, log and message."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL (a path, an http URI): nothing to hide
        return url
