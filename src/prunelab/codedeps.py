"""What a result depends on in code: the prunelab modules a module imports, transitively.

Read from the source (imports inside functions count), so it cannot fall behind the code
the way a hand-written list does. One source for two readers: the Optuna studies' names
(`studies.setup_digest`: a changed trial or point starts a new study instead of handing
back old results) and the test that dvc.yaml lists every module a stage imports.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # the folder that holds the prunelab package
STAGES = "prunelab.stages."


def module_file(name: str, src: Path = SRC) -> Path:
    path = src / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:`, whose imports never run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING",
                                                                  "typing.TYPE_CHECKING"}:
            yield from (n for child in node.orelse for n in [child, *_run_time_nodes(child)])
            continue
        yield node
        yield from _run_time_nodes(node)


def imported(name: str, src: Path = SRC) -> set[str]:
    """The prunelab modules (and their packages) that module `name` imports anywhere in
    code that runs (imports inside functions count; type-only ones do not)."""
    tree = ast.parse(module_file(name, src).read_text())
    found: set[str] = set()
    for node in _run_time_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # "from prunelab import tracking" names a module, not an attribute.
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if module_file(f"{node.module}.{a.name}", src).exists()}
    mods = {m for m in found if m.split(".")[0] == "prunelab" and module_file(m, src).exists()}
    parents = {".".join(m.split(".")[:i]) for m in mods for i in range(1, m.count(".") + 1)}
    return mods | parents


def closure(start: str, stop: str = STAGES, src: Path = SRC) -> set[str]:
    """`start` and what it imports, transitively, not entering modules named `stop...`
    (the CLI imports a stage's module only when that stage runs)."""
    seen: set[str] = set()
    # Importing a module imports the packages it sits in first.
    todo = [start, *(".".join(start.split(".")[:i]) for i in range(1, start.count(".") + 1))]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [i for i in imported(m, src) if not i.startswith(stop)]
    return seen


def files(start: str, src: Path = SRC) -> list[Path]:
    """The source files of `start`'s closure, in a fixed order."""
    return sorted(module_file(m, src) for m in closure(start, src=src))


def code_digest(start: str, src: Path = SRC) -> str:
    """SHA-1 over the closure's file names and contents: any edit to any of them moves it."""
    h = hashlib.sha1()
    for path in files(start, src):
        h.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
