"""Store faults against your own PostgreSQL: the sweep run by a collecting command and one
`prunelab sweep --worker` command, undisturbed, then under each fault of issue 40 — the
worker's connections cut again and again for a minute, the worker killed (SIGKILL) mid-
point, the collecting command killed and started again while the worker goes on — and
for each: faults injected, points lost, points computed twice into the results, work
redone, time lost against the undisturbed run, and whether its files are the same.

Run from the project root after `make pipeline` (it needs data/ and models/seeds):

    .venv/bin/python benchmarks/store_faults.py [--storage URL] [--methods magnitude random]
        [--seeds 0 1] [--cut-for 60]

Only this script's own sessions are cut (their `application_name`, set through PGAPPNAME),
so other users of the database are not disturbed; the role in URL must be allowed to end
them (its own sessions: any role). Each run is a fresh study (a unique prune.seed names a
new study and changes no point), deleted afterwards; MLflow logs go to a throw-away store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import yaml
from _shared_store import only_methods, params_and_env
from optuna.trial import TrialState

from prunelab.config import parse_config
from prunelab.plumbing.stores import mask_url
from prunelab.study.sweep import study_name

APP = "prunelab-faults"  # the application_name of this script's sessions


class Run:
    """One sweep on a fresh study: the collecting command, and one worker command."""

    def __init__(self, storage: str, params: dict[str, Any], tmp: Path, name: str) -> None:
        params = {**params, "prune": {**params["prune"],
                                      "seed": int(time.time() * 1000) % 10**9}}
        self.storage, self.out = storage, tmp / name
        self.env = params_and_env(params, tmp / f"params-{name}.yaml", storage)
        self.cmd = ["prunelab", "--params", str(tmp / f"params-{name}.yaml"), "sweep",
                    "--baselines", "models/seeds", "--workers", "1"]
        self.study = study_name(parse_config(params))
        self.log = (tmp / f"{name}.log").open("w")
        self.start = time.monotonic()
        self.collector = self.spawn("collector", "--out-dir", str(self.out))
        while not self.trials():  # the worker joins once the points are queued
            time.sleep(0.2)
        self.worker = self.spawn("worker", "--worker")

    def spawn(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "PGAPPNAME": f"{APP}-{role}"}
        return subprocess.Popen([*self.cmd, *args], env=env, stdout=self.log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        try:
            return optuna.load_study(study_name=self.study, storage=self.storage).trials
        except KeyError:
            return []

    def finished(self) -> int:
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self.trials())

    def wait_for(self, points: int) -> None:
        while self.finished() < points:
            time.sleep(0.2)

    def result(self) -> dict[str, Any]:
        """Wait for both commands; what the study and the files say."""
        codes = [self.collector.wait(), self.worker.wait()]
        wall = time.monotonic() - self.start
        trials = self.trials()
        queued = {t.user_attrs["queued"] for t in trials if "queued" in t.user_attrs}
        done = Counter(t.user_attrs["queued"] for t in trials if "point" in t.user_attrs
                       and t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        optuna.delete_study(study_name=self.study, storage=self.storage)
        self.log.close()
        return {"codes": codes, "wall_s": wall, "lost": len(queued - set(done)),
                "twice": sum(n > 1 for n in done.values()),
                "redone": sum(t.state == TrialState.FAIL and "withdrawn" not in t.user_attrs
                              for t in trials),
                "retries": Path(self.log.name).read_text().count("retrying in"),
                "files": {p.name: json.loads(p.read_text())
                          for p in sorted(self.out.glob("*.json"))}}


def cut_sessions(storage: str, role: str) -> int:
    """End every session of this script's `role` command on the server."""
    engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        ended = conn.execute(sqlalchemy.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = :app AND pid <> pg_backend_pid()"),
            {"app": f"{APP}-{role}"}).all()
    engine.dispose()
    return len(ended)


def cut_worker(run: Run, cut_for: float) -> int:
    run.wait_for(2)
    cuts, end = 0, time.monotonic() + cut_for
    while time.monotonic() < end and run.worker.poll() is None:
        cuts += cut_sessions(run.storage, "worker")
        time.sleep(2)
    return cuts


def kill_worker(run: Run, _: float) -> int:
    run.wait_for(4)
    os.killpg(run.worker.pid, signal.SIGKILL)  # with its pool, mid-point
    return 1


def restart_collector(run: Run, _: float) -> int:
    run.wait_for(4)
    os.killpg(run.collector.pid, signal.SIGKILL)
    run.collector.wait()
    run.collector = run.spawn("collector", "--out-dir", str(run.out))
    return 1


FAULTS: dict[str, Callable[[Run, float], int]] = {
    "the worker's connections cut every 2 s": cut_worker,
    "the worker killed (SIGKILL) mid-point": kill_worker,
    "the collector killed, then started again": restart_collector,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--methods", nargs="+", default=["magnitude", "random"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--cut-for", type=float, default=60, help="seconds of cutting")
    args = ap.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    only_methods(params, args.methods)
    params["sweep"]["seeds"] = args.seeds
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores; store "
          f"{mask_url(args.storage)}; methods {args.methods}, seeds {args.seeds}, ratios "
          f"{params['sweep']['ratios']}; the collector and one worker, 1 process each")
    with tempfile.TemporaryDirectory() as d:
        calm = Run(args.storage, params, Path(d), "undisturbed").result()
        print(f"\n| fault | injected | points lost | computed twice into the results | "
              f"work redone (trials) | retries | time lost | same files |\n|---|---|---|---|"
              f"---|---|---|---|\n| none ({len(calm['files'])} files, "
              f"{calm['wall_s']:.0f} s) | 0 | {calm['lost']} | {calm['twice']} | "
              f"{calm['redone']} | {calm['retries']} | - | - |", flush=True)
        for i, (fault, inject) in enumerate(FAULTS.items()):
            run = Run(args.storage, params, Path(d), f"fault-{i}")
            injected = inject(run, args.cut_for)
            r = run.result()
            failed = "" if r["codes"] == [0, 0] else f" (exit codes {r['codes']})"
            if fault.startswith("the worker killed"):
                failed = "" if r["codes"][0] == 0 else failed  # its worker's -9 is the fault
            print(f"| {fault}{failed} | {injected} | {r['lost']} | {r['twice']} | "
                  f"{r['redone']} | {r['retries']} | {r['wall_s'] - calm['wall_s']:+.0f} s | "
                  f"{r['files'] == calm['files']} |", flush=True)


if __name__ == "__main__":
    main()
