"""dvc.yaml's deps and params are complete: a stage whose code or params changed reruns.

For each stage, the prunelab modules its command imports (transitively, read from the
code: imports inside functions count) must each be a dep, and every params key its code
reads must be listed (or a section above it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(name: str) -> Path:
    path = SRC / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported(name: str) -> set[str]:
    """prunelab modules that `name` imports anywhere in its code (and its packages)."""
    tree = ast.parse(module_file(name).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # "from prunelab import tracking" names a module, not an attribute.
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if module_file(f"{node.module}.{a.name}").exists()}
    mods = {m for m in found if m.split(".")[0] == "prunelab" and module_file(m).exists()}
    parents = {".".join(m.split(".")[:i]) for m in mods for i in range(1, m.count(".") + 1)}
    return mods | parents


def closure(start: str, stop: str = "prunelab.stages.") -> set[str]:
    """`start` and what it imports, transitively, not entering modules named `stop...`
    (the CLI imports each stage's module only when that stage runs)."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [i for i in imported(m) if not i.startswith(stop)]
    return seen


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
