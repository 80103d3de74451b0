"""Rewrite each dvc.yaml stage's `src/prunelab/...` deps from the import graph.

    python scripts/sync_dvc_deps.py     # then `git diff dvc.yaml`

The modules a stage's command imports, transitively (`prunelab.codedeps`, the same graph
that names the Optuna studies), replace the stage's listed ones; other deps, comments and
layout stay. `tests/test_dvc_deps.py` fails while a stage misses one.
"""

from __future__ import annotations

import re

import yaml

from prunelab.codedeps import SRC, closure, module_file

ROOT = SRC.parent
DEP = re.compile(r"^(\s+)- src/prunelab/\S+\n", re.M)


def stage_modules(cmd: str) -> list[str]:
    """The files of the CLI and of the stage module that `cmd` runs, with their imports."""
    sub = re.match(r"prunelab (\w+)", cmd.strip())
    if not sub:
        raise SystemExit(f"not a prunelab command: {cmd}")
    mods = closure("prunelab.cli") | closure(f"prunelab.stages.{sub.group(1)}", stop="-")
    return sorted(str(module_file(m).relative_to(ROOT)) for m in mods)


def main() -> None:
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    stages = yaml.safe_load(text)["stages"]
    blocks = re.split(r"(?m)^(?=  \w[\w-]*:\n)", text)  # one block per stage
    out = []
    for block in blocks:
        name = block.split(":", 1)[0].strip()
        found = list(DEP.finditer(block))
        if name in stages and found:
            indent = found[0].group(1)
            listed = "".join(f"{indent}- {f}\n" for f in stage_modules(stages[name]["cmd"]))
            block = block[:found[0].start()] + listed + DEP.sub("", block[found[0].start():])
        out.append(block)
    path.write_text("".join(out))


if __name__ == "__main__":
    main()
