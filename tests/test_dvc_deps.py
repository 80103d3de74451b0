"""dvc.yaml's deps and params are complete: a stage whose code or params changed reruns.

For each stage, the prunelab modules its command imports (transitively, read from the
code: imports inside functions count) must each be a dep, and every params key its code
reads must be listed (or a section above it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from prunelab.codedeps import closure, module_file

ROOT = Path(__file__).resolve().parents[1]


def stages() -> dict[str, dict]:
    out = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        out[name] = stage.get("do", stage)
    return out


def needed_files(cmd: str) -> set[str]:
    sub = re.match(r"prunelab (\w+)", cmd.strip())
    assert sub, f"not a prunelab command: {cmd}"
    mods = closure("prunelab.cli") | closure(f"prunelab.stages.{sub.group(1)}", stop="-")
    return {str(module_file(m).relative_to(ROOT)) for m in mods}




@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_imported_module_is_a_dep(stage: str) -> None:
    spec = stages()[stage]
    deps = {d for d in spec.get("deps", []) if isinstance(d, str)}
    assert "src/prunelab" not in deps and "src" not in deps  # not the package as a whole
    missing = sorted(needed_files(spec["cmd"]) - deps)
    assert not missing, f"stage {stage} imports {missing} but does not list them in deps"
