"""Wall time of one prune and one finetune stage command of the `mlp` (process start to
exit, imports included), and what a bare interpreter spends importing what they need.

Run from the project root after `make pipeline` (it needs data/, models/ and search/):

    .venv/bin/python benchmarks/stages.py [--rounds 5] [--method magnitude]
        [--granularity weight]

The commands are the ones dvc.yaml runs for that method and granularity, writing to a
temporary folder and logging to a throw-away MLflow store (already created, as in a
project after its first stage). Rounds alternate prune, finetune, imports; medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Bare interpreters importing (code -> note): what the stages pay before any work.
IMPORTS = {"import torch": "", "import mlflow": "",
           "import torchvision": " (no longer imported)",
           # torch.export (the pt2 model a finetune stage logs) imports the compiler.
           "import torch, torch._dynamo, mlflow": " (the floor of a finetune stage)"}


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
        common = ["--method", args.method, "--granularity", args.granularity,
                  "--baseline", "models/seeds/0.safetensors", "--out-dir", str(tmp / name),
                  "--choice", f"search/{name}.json"]
        prune = ["prunelab", "prune", *common, "--metrics-out", str(tmp / "prune.json")]
        finetune = ["prunelab", "finetune", *common, "--prune-metrics", str(tmp / "prune.json"),
                    "--metrics-out", str(tmp / "finetune.json")]
        wall(prune, env)
        wall(finetune, env)  # creates the MLflow store: not part of a stage's usual cost
        times: dict[str, list[float]] = {"prune": [], "finetune": [], **{k: [] for k in IMPORTS}}
        for _ in range(args.rounds):
            times["prune"].append(wall(prune, env))
            times["finetune"].append(wall(finetune, env))
            for code in IMPORTS:
                times[code].append(wall([sys.executable, "-c", code], env))
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"{name}, median of {args.rounds} rounds\n")
    print("| command | wall (s) |\n|---|---|")
    print(f"| `prunelab prune` ({name}) | {statistics.median(times['prune']):.2f} |")
    print(f"| `prunelab finetune` ({name}, 3 epochs) | "
          f"{statistics.median(times['finetune']):.2f} |")
    for code, note in IMPORTS.items():
        print(f"| `python -c '{code}'`{note} | {statistics.median(times[code]):.2f} |")


if __name__ == "__main__":
    main()
