"""Atomic writes: a reader (or a stage killed midway) never sees half a file or folder."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _unique(path: Path) -> Path:
    """A name beside `path` no other writer uses, which the stale-file sweeps recognise.
    Not tempfile's: it creates files 0600 and folders 0700 whatever the umask, so outputs
    others must read (metrics, reports, data) would be private."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A writer killed by SIGKILL cannot clean up: drop what such a writer left behind.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = _unique(path)
    with open(tmp, "xb"):  # created as open() creates files: the umask sets its mode
        pass
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path` to fill; it replaces `path` as a whole only
    if the block succeeds (two renames, no copying), so a stage killed midway leaves the
    previous folder whole, not a mix of old and new files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old.tmp")
    for stale in [*path.parent.glob(f".{path.name}.*.tmp"), old]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a writer killed by SIGKILL
    tmp = _unique(path)
    tmp.mkdir()  # as mkdir creates folders (the umask sets its mode), unlike mkdtemp's 0700
    try:
        yield tmp
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
