"""Wall time and peak memory of the default `dvc repro` from scratch, and of a second
`dvc repro` with nothing changed, in a fresh clone of this repository's HEAD.

    .venv/bin/python benchmarks/pipeline.py [--keep]

The clone is made beside this project (so params.yaml's `../shared/data/mnist` source
resolves the same way) and runs with this venv's executables and the clone's own source.
Peak memory is the largest resident set of any single process of the run (getrusage of
the waited-for children), not a sum. Per-stage times come from DVC's own output.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    args = ap.parse_args()
    root = Path.cwd()
    clone = root.parent / f"{root.name}-pipeline-bench"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                          capture_output=True, text=True).stdout.strip()
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(clone / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PRUNELAB_OPTUNA_STORAGE", None)

    first, log = timed_run(["dvc", "repro"], clone, env)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    second, again = timed_run(["dvc", "repro"], clone, env)
    stages = re.findall(r"Running stage '([^']+)'", log)

    print(f"HEAD {head}; machine {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}\n")
    print("| run | wall time | peak memory (largest process) |")
    print("|---|---|---|")
    print(f"| `dvc repro` from scratch ({len(stages)} stages) | {first / 60:.1f} min "
          f"({first:.0f} s) | {peak_mib:,.0f} MiB |")
    print(f"| `dvc repro` again, nothing changed | {second:.1f} s | — |")
    if "Running stage" in again:
        print("\nWARNING: the second repro ran stages:\n" + again)
    if not args.keep:
        shutil.rmtree(clone)


if __name__ == "__main__":
    main()
