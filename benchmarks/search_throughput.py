"""Trials per minute of a default search study with 1 and 2 workers on PostgreSQL.

Run from the project root after `make pipeline` (it needs data/ and the baseline):

    .venv/bin/python benchmarks/search_throughput.py [--storage URL] [--workers 1 2]

Each measurement is a fresh study (params.yaml as is, but a unique search.seed, so the
study name is new), run by the real command `prunelab search --workers N`. Reported:
the command's wall time and trials per minute between the first trial's start and the
last trial's end (start-up excluded). MLflow logs go to a throw-away store.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from _shared_store import params_and_env

from prunelab.config import parse_config
from prunelab.study.search import study_name


def measure(storage: str, workers: int, seed: int, tmp: Path) -> dict[str, float]:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["search"]["seed"] = seed
    params["search"]["refine"] = 0  # bisection trials run one at a time: not worker-bound
    params_path = tmp / f"params-{seed}.yaml"
    env = params_and_env(params, params_path, storage)
    cmd = ["prunelab", "--params", str(params_path), "search", "--method", "magnitude",
           "--granularity", "weight", "--baseline", "models/seeds/0.safetensors",
           "--out-dir", str(tmp / "search"), "--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    cfg = parse_config(params)
    name = study_name(cfg, "magnitude", "weight", Path("models/seeds/0.safetensors"))
    study = optuna.load_study(study_name=name, storage=storage)
    trials = [t for t in study.trials if "queued" in t.user_attrs]
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds()
    optuna.delete_study(study_name=name, storage=storage)
    return {"trials": len(trials), "wall_s": wall, "trials_per_min": 60 * len(trials) / span}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as d:
        for workers in args.workers:
            runs = []
            for r in range(args.repeats):
                seed = int(time.time()) % 10**6 + 1000 * workers + r
                runs.append(measure(args.storage, workers, seed, Path(d)))
                m = runs[-1]
                print(f"  workers={workers} run {r}: {m['trials']} trials, "
                      f"{m['trials_per_min']:.1f} trials/min, command {m['wall_s']:.1f} s")
            tpm = statistics.median(m["trials_per_min"] for m in runs)
            wall = statistics.median(m["wall_s"] for m in runs)
            print(f"workers={workers}: median {tpm:.1f} trials/min (first trial start to last "
                  f"trial end), median command {wall:.1f} s, {len(runs)} runs")


if __name__ == "__main__":
    main()
