"""`prunelab criteria`: the manifest of every registered criterion (built-in, installed
entry point, or params.yaml's `extra_criteria`) with the digest of its code, written only
when it changed. DVC runs this stage every time (`always_changed`) and the stages that
prune depend on its file, so a criterion's edit anywhere, an outside package's included,
reruns them (each keeps the work whose keys did not move), and a second `dvc repro` with
nothing changed reruns nothing after it."""

from __future__ import annotations

import json
from pathlib import Path

from prunelab import keys
from prunelab.config import Config
from prunelab.plumbing.fileio import write_bytes


def run(cfg: Config, out: Path) -> None:
    text = (json.dumps(keys.criteria_manifest(cfg), indent=2, sort_keys=True) + "\n").encode()
    if not out.is_file() or out.read_bytes() != text:  # same bytes: DVC sees no change
        write_bytes(out, text)
    print(f"criteria: {len(json.loads(text))} registered", flush=True)
