"""What a result depends on in code: the prunelab modules a module imports, transitively.

Read from the source (imports inside functions count), so it cannot fall behind the code
the way a hand-written list does. One source for the keys of the work (`keys`: a changed
trial, point or task is computed again instead of handing back old results) and for the
test that dvc.yaml lists every module a stage imports.

A unit of work hashes two closures: the shared procedure's (`procedure_digest`: from the
module that runs it, never entering `prunelab.plumbing`, which cannot change a number) and
its criterion's (`criterion_digest`: the module that registered it and what that imports,
an outside package's own modules included). Criteria modules are found by the registry,
not imported by the procedure, so one criterion's edit moves only its own work's keys.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # the folder that holds the prunelab package
STAGES = "prunelab.stages."
PLUMBING = "prunelab.plumbing"
# Modules that change a number only through values the keys hash themselves: the params'
# schema and its checks (`config`: validators accept or refuse, they transform nothing, and
# every knob is in params.yaml, so `keys.params_part` hashes what they let through) and the
# methods' names and checks (`methods`: a criterion's settings enter as values,
# `keys.criterion_part`). Their code stays out of the closures, so a new param or a new
# check moves no key (it moved every key of the study until 2026-12-02).
VALUES_ONLY = ("prunelab.config", "prunelab.methods")


def module_file(name: str, src: Path = SRC) -> Path:
    if name.split(".")[0] != "prunelab":  # an outside criterion's package: where Python finds it
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a parent that is a module, not a package
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return Path("/nonexistent") / name
        return Path(spec.origin)
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


def imported(name: str, src: Path = SRC, roots: tuple[str, ...] = ("prunelab",)) -> set[str]:
    """The modules of the packages `roots` (and their packages) that module `name` imports
    anywhere in code that runs (imports inside functions count; type-only ones do not)."""
    tree = ast.parse(module_file(name, src).read_text())
    found: set[str] = set()
    for node in _run_time_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # "from prunelab import tracking" names a module, not an attribute.
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if node.module.split(".")[0] in roots
                      and module_file(f"{node.module}.{a.name}", src).exists()}
    mods = {m for m in found if m.split(".")[0] in roots and module_file(m, src).exists()}
    parents = {".".join(m.split(".")[:i]) for m in mods for i in range(1, m.count(".") + 1)}
    return mods | parents


def closure(start: str, stop: str | tuple[str, ...] = STAGES, src: Path = SRC) -> set[str]:
    """`start` and what it imports, transitively, not entering modules named `stop...`
    (the CLI imports a stage's module only when that stage runs); an outside module's
    closure also follows its own top-level package."""
    seen: set[str] = set()
    roots = tuple(dict.fromkeys(("prunelab", start.split(".")[0])))
    # Importing a module imports the packages it sits in first.
    todo = [start, *(".".join(start.split(".")[:i]) for i in range(1, start.count(".") + 1))]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [i for i in imported(m, src, roots) if not i.startswith(stop)]
    return seen


def _digest(modules: set[str], src: Path) -> str:
    """SHA-1 over the modules' names and sources: any edit to any of them moves it."""
    h = hashlib.sha1()
    for name in sorted(modules):
        path = module_file(name, src)
        label = str(path.relative_to(src)) if path.is_relative_to(src) else name
        h.update(label.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def procedure_digest(start: str, src: Path = SRC) -> str:
    """The code a unit of work runs whatever its criterion: `start` and what it imports,
    less the plumbing (files, progress, tracking, stores, queues) and `VALUES_ONLY`."""
    return _digest(closure(start, stop=(STAGES, PLUMBING, *VALUES_ONLY), src=src) | {start},
                   src)


def criterion_digest(module: str, src: Path = SRC) -> str:
    """A criterion's own code: the module that registered it and what that imports."""
    return _digest(closure(module, stop=(STAGES, PLUMBING, *VALUES_ONLY), src=src), src)
