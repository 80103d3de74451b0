"""Wall time of one `prunelab prune` command for one method-granularity of the `mlp`
(process start to exit, imports included: what one task costs run on its own, as each
was before the stage pooled them), and what a bare interpreter spends importing it.

Run from the project root after `make pipeline` (it needs data/, models/ and search/):

    .venv/bin/python benchmarks/stages.py [--rounds 5] [--method magnitude]
        [--granularity weight]

The command is dvc.yaml's, narrowed to that method and granularity, writing to a temporary
folder (emptied each round, so the task is computed, not kept) and logging to a throw-away
MLflow store (already created, as in a project after its first stage). Rounds alternate
the command and the imports; medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Bare interpreters importing (code -> note): what the stages pay before any work.
IMPORTS = {"import torch": "", "import mlflow": "",
           "import torchvision": " (no longer imported)",
           # torch.export (the pt2 model the prune stage logs) imports the compiler.
           "import torch, torch._dynamo, mlflow": " (the floor of a prune command)"}


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--method", default="magnitude")
    ap.add_argument("--granularity", default="weight")
    args = ap.parse_args()
    name = f"{args.method}-{args.granularity}"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        out = tmp / "out"
        prune = ["prunelab", "prune", "--method", args.method, "--granularity",
                 args.granularity, "--baseline", "models/seeds/0.safetensors",
                 "--choices", "search", "--out-dir", str(out / "models"),
                 "--prune-metrics-dir", str(out / "prune"),
                 "--finetune-metrics-dir", str(out / "finetune")]
        wall(prune, env)  # creates the MLflow store: not part of a stage's usual cost
        times: dict[str, list[float]] = {"prune": [], **{k: [] for k in IMPORTS}}
        for _ in range(args.rounds):
            shutil.rmtree(out)
            times["prune"].append(wall(prune, env))
            for code in IMPORTS:
                times[code].append(wall([sys.executable, "-c", code], env))
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"{name}, median of {args.rounds} rounds\n")
    print("| command | wall (s) |\n|---|---|")
    print(f"| `prunelab prune` ({name}: prune, 3 epochs' fine-tuning) | "
          f"{statistics.median(times['prune']):.2f} |")
    for code, note in IMPORTS.items():
        print(f"| `python -c '{code}'`{note} | {statistics.median(times[code]):.2f} |")


if __name__ == "__main__":
    main()
