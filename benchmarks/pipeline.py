"""Wall time of the default `dvc repro` from scratch, per stage and in all, alone and with
one busy process competing for the cores, in a fresh clone of this repository's HEAD.

    .venv/bin/python benchmarks/pipeline.py [--keep] [--alone]

The clone is made beside this project (so params.yaml's `../shared/data/mnist` source
resolves the same way) and runs with this venv's executables and the clone's own source.
Three runs, one after another: `dvc repro --force` (every stage, no Optuna study or MLflow
store yet), `dvc repro` again with nothing changed, and `dvc repro --force` once more with
the studies and models/pruned deleted (so nothing is found already computed) while a busy
process (a Python loop) runs beside it (not with --alone). Per-stage times are the
stages' own ("prunelab <stage>: done in"), from the start of the command, after its
imports. Peak memory is the largest resident set of any one process (getrusage of the
children). The outputs of the two full runs are compared byte for byte: the busy
process may slow the run, not change its results.

Beside the wall times, the study's training floor (`floor.py`): the model-epochs each
stage trained times a 1-thread epoch of the baseline, measured in this run (before, between
and after the full runs; the median), divided by the workers — and wall / floor, alone and
loaded (target: alone ≤ 1.25×, issue #24); and how much slower an epoch runs when both
cores train at once (`floor.py --pair`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import floor  # beside this script

from prunelab.config import load_config

OUTPUTS = ("metrics", "search", "sweep", "oracle/oracle.json", "reports/summary.json",
           "reports/headline.json", "models/seeds")


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in OUTPUTS:
        path = root / name
        for f in sorted(path.rglob("*") if path.is_dir() else [path]):
            if f.is_file():
                h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()[:16]


def busy() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    ap.add_argument("--alone", action="store_true",
                    help="skip the third run (loaded): the alone figures in half the time")
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
    for var in ("MLFLOW_TRACKING_URI", "PRUNELAB_OPTUNA_STORAGE"):
        env.pop(var, None)

    timed_run(["dvc", "repro", "download"], clone, env)  # the epoch below reads data/
    readings = [floor.read_machine(clone)]
    alone, log_alone = timed_run(["dvc", "repro", "--force"], clone, env)
    readings.append(floor.read_machine(clone))
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    first = digest(clone)
    again, log_again = timed_run(["dvc", "repro"], clone, env)
    # What a rerun would find already computed: the studies' finished trials, and the prune
    # stage's tasks whose inputs did not move.
    loaded, log_loaded, same = alone, log_alone, True
    if not args.alone:
        shutil.rmtree(clone / "studies")
        shutil.rmtree(clone / "models" / "pruned")
        hog = busy()
        try:
            loaded, log_loaded = timed_run(["dvc", "repro", "--force"], clone, env)
        finally:
            hog.kill()
        same = digest(clone) == first
    readings.append(floor.read_machine(clone))
    epochs = floor.model_epochs(clone)
    workers = floor.worker_count(load_config(clone / "params.yaml"))

    t_alone, t_loaded = (floor.stage_walls(log) for log in (log_alone, log_loaded))
    print(f"HEAD {head}; machine {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}\n")
    print("| run | wall time | peak memory (largest process) |")
    print("|---|---|---|")
    print(f"| `dvc repro --force`, alone ({len(t_alone)} stages) | {alone / 60:.1f} min "
          f"({alone:.0f} s) | {peak_mib:,.0f} MiB |")
    print(f"| `dvc repro` again, nothing changed | {again:.1f} s | — |")
    if not args.alone:
        print(f"| `dvc repro --force`, one busy process beside it | {loaded / 60:.1f} min "
              f"({loaded:.0f} s), **{loaded / alone:.2f}×** alone | — |")
        print(f"\nOutputs of the two full runs identical: {same}")
        print("\n| stage | alone (s) | with a busy process (s) | ratio |")
        print("|---|---|---|---|")
        for stage, t in t_alone.items():
            u = t_loaded.get(stage, float("nan"))
            print(f"| {stage} | {t:.1f} | {u:.1f} | {u / t:.2f} |")
        print(f"| sum of stages | {sum(t_alone.values()):.0f} | {sum(t_loaded.values()):.0f} "
              f"| {sum(t_loaded.values()) / sum(t_alone.values()):.2f} |")
    one = statistics.median(r.epoch_s for r in readings)
    print(f"\nTraining floor: 1-thread epoch of the baseline {one:.2f} s (median of "
          f"{', '.join(f'{r.epoch_s:.2f}' for r in readings)}: before, between and after "
          f"the full runs), {workers} workers; 1-thread sgemm (2048²) "
          f"{', '.join(f'{r.sgemm_gflops:.0f}' for r in readings)} GFLOP/s. Alone:\n")
    print(floor.table(floor.stage_walls(log_alone), epochs, one, workers, alone))
    if not args.alone:
        print("\nWith a busy process beside it:\n")
        print(floor.table(floor.stage_walls(log_loaded), epochs, one, workers, loaded))
    print("\nOne epoch alone against two processes at once (the floor assumes 2 workers "
          "are twice one):")
    floor.pair_slowdown(clone)
    if "Running stage" in log_again:
        print("\nWARNING: the second repro ran stages:\n" + log_again)
    if not args.keep:
        shutil.rmtree(clone)


if __name__ == "__main__":
    main()
