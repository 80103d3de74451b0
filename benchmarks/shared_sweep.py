"""Points per minute of the sweep shared on PostgreSQL: the collecting command alone, then
the collecting command and one `prunelab sweep --worker` started as a separate command;
and whether both give the same files.

Run from the project root after `make pipeline` (it needs data/ and models/seeds):

    .venv/bin/python benchmarks/shared_sweep.py [--storage URL] [--methods magnitude taylor]
        [--seeds 0 1]

Each measurement is a fresh study (params.yaml with the methods and seeds given, and a
unique prune.seed, which names a new study and changes no point), each command on one
worker process. Points per minute count from the first point's start to the last one's
end. MLflow logs go to a throw-away store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from _shared_store import only_methods, params_and_env

from prunelab.config import parse_config
from prunelab.study.sweep import study_name


def measure(storage: str, helpers: int, params: dict, tmp: Path) -> tuple[float, dict]:
    params["prune"]["seed"] = int(time.time() * 1000) % 10**9
    path = tmp / f"params-{helpers}.yaml"
    env = params_and_env(params, path, storage)
    base = ["prunelab", "--params", str(path), "sweep", "--baselines", "models/seeds",
            "--workers", "1"]
    out = tmp / f"sweep-{helpers}"
    collector = subprocess.Popen([*base, "--out-dir", str(out)], env=env,
                                 stdout=subprocess.DEVNULL)
    name = study_name(parse_config(params))
    while True:  # helpers join once the collector has queued the points
        try:
            if optuna.load_study(study_name=name, storage=storage).trials:
                break
        except KeyError:
            pass
        time.sleep(0.2)
    procs = [subprocess.Popen([*base, "--worker"], env=env, stdout=subprocess.DEVNULL)
             for _ in range(helpers)]
    for p in [collector, *procs]:
        if p.wait() != 0:
            sys.exit(f"{p.args} failed")
    done = [t for t in optuna.load_study(study_name=name, storage=storage).trials
            if "point" in t.user_attrs]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    optuna.delete_study(study_name=name, storage=storage)
    files = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    return 60 * len(done) / span, files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--methods", nargs="+", default=["magnitude", "taylor"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    only_methods(params, args.methods)
    params["sweep"]["seeds"] = args.seeds
    points = (len(args.methods) * len(params["prune"]["granularities"])
              * len(params["sweep"]["ratios"]) * len(args.seeds))
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"{points} points ({args.methods} x {params['prune']['granularities']} x ratios "
          f"{params['sweep']['ratios']} x seeds {args.seeds})")
    with tempfile.TemporaryDirectory() as d:
        rate1, files1 = measure(args.storage, 0, params, Path(d))
        print(f"1 process (the collecting command): {rate1:.1f} points/min")
        rate2, files2 = measure(args.storage, 1, params, Path(d))
        print(f"2 processes (collector + 1 --worker command): {rate2:.1f} points/min "
              f"({rate2 / rate1:.2f}x)")
        print(f"same files from both: {files1 == files2}")


if __name__ == "__main__":
    main()
