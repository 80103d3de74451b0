"""The study's training floor: the model-epochs of training each stage of a finished
`dvc repro` ran, times one training epoch of the baseline model on one thread, divided by
the workers — the wall time the pipeline would take if it did nothing but train, with
every core busy (issue #24). `benchmarks/pipeline.py` prints it beside the wall times;
on its own, for a project whose pipeline has run and the captured `dvc repro` output:

    .venv/bin/python benchmarks/floor.py PROJECT REPRO_LOG
    .venv/bin/python benchmarks/floor.py --pair PROJECT   # one epoch alone against two at once

Model-epochs are counted from what the run left, not from params alone: a search trial
stopped early ran fewer epochs (its `val_accuracy_epoch<k>` attributes in the Optuna
journal say how many), a sweep point with the matched random control fine-tuned twice.
Every epoch is counted at the *baseline's* cost, though a neuron-pruned model, and a
`scratch` control, is smaller: the floor is an upper bound of the true one, so the ratio
wall/floor it gives errs on the flattering side. Prune, oracle and report stages train
nothing (floor 0): all of their time is above the floor.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from prunelab.config import Config, load_config
from prunelab.plumbing.studies import JOURNAL
from prunelab.study.search import EPOCH_ATTR
from prunelab.workers import worker_count

# One epoch of the baseline on the training split, one torch thread, as a stage runs it
# (kernels pinned as `compute.cpu_capability` says), then the thread's sgemm rate (2048²
# products, the median of 5): "seconds GFLOP/s" on stdout.
EPOCH = """
import sys, time, torch
sys.path.insert(0, sys.argv[2])  # benchmarks/, for training.sgemm_gflops
from prunelab.config import load_config
from prunelab.cpu import pin_cpu_capability
cfg = load_config(sys.argv[1])
pin_cpu_capability(cfg.compute.cpu_capability)
torch.set_num_threads(cfg.compute.threads)
from prunelab.models import build_model
from prunelab.settings import train_settings, train_val_splits
from prunelab.training import make_optimizer, train_epoch
train, _ = train_val_splits(cfg)
s = train_settings(cfg)
model = build_model(cfg.model)
opt = make_optimizer(model, s)
g = torch.Generator().manual_seed(0)
train_epoch(model, train, opt, s, g)  # warm-up
start = time.perf_counter()
train_epoch(model, train, opt, s, g)
epoch = time.perf_counter() - start
from training import sgemm_gflops
print(epoch, sgemm_gflops(torch.device("cpu")))
"""


class Reading(NamedTuple):
    epoch_s: float  # one training epoch of the baseline, one thread
    sgemm_gflops: float  # the same thread's fp32 matmul rate


def read_machine(project: Path) -> Reading:
    """One training epoch of the baseline and the sgemm rate, in a fresh process in
    `project`."""
    out = subprocess.run([sys.executable, "-c", EPOCH, "params.yaml",
                          str(Path(__file__).resolve().parent)], cwd=project,
                         check=True, capture_output=True, text=True).stdout
    epoch_s, gflops = out.strip().splitlines()[-1].split()
    return Reading(float(epoch_s), float(gflops))


def _search_epochs(project: Path, cfg: Config) -> int:
    """Epochs the search trials fine-tuned: one `val_accuracy_epoch<k>` each (and, in
    rounds, the epochs between the cuts)."""
    storage = JournalStorage(JournalFileBackend(str(project / JOURNAL)))
    between = (cfg.finetune.rounds - 1) * (cfg.finetune.epochs // cfg.finetune.rounds)
    total = 0
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if "-sweep-" in summary.study_name:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            ran = sum(k.startswith(EPOCH_ATTR) for k in t.user_attrs)
            total += ran + (between if ran else 0)
    return total


def _sweep_epochs(project: Path, cfg: Config) -> int:
    """Epochs of the sweep's points: the fine-tuning (with the matched random control's,
    where a point has it), scratch's training from scratch."""
    ft, total = cfg.finetune.epochs, 0
    for path in sorted((project / "sweep").glob("*.json")):
        for p in json.loads(path.read_text())["points"]:
            if "infeasible" in p:
                continue
            total += (cfg.train.epochs + ft if p["method"] == "scratch" else
                      2 * ft if "test_correct_matched_random" in p else ft)
    return total


def model_epochs(project: Path) -> dict[str, int]:
    """{stage: model-epochs} (prune: each method-granularity's fine-tuning)."""
    cfg = load_config(project / "params.yaml")
    series = len(cfg.prune.methods) * len(cfg.prune.granularities)
    return {"train": len(cfg.sweep.seeds) * cfg.train.epochs,
            "search": _search_epochs(project, cfg),
            "prune": series * cfg.finetune.epochs,
            "sweep": _sweep_epochs(project, cfg), "oracle": 0, "report": 0}


def stage_walls(log: str) -> dict[str, float]:
    """{stage: seconds} from `dvc repro`'s output: each stage's own "done in" (after its
    imports; the process start and DVC's checks are not in it)."""
    times: dict[str, float] = defaultdict(float)
    stage = None
    for line in log.splitlines():
        if m := re.match(r"Running stage '([^']+)'", line):
            stage = m.group(1)
        elif (m := re.match(r"prunelab \w+: done in ([\d.]+) s", line)) and stage:
            times[stage] += float(m.group(1))
    return dict(times)


def table(walls: dict[str, float], epochs: dict[str, int], epoch_s: float, n_workers: int,
          total_wall: float) -> str:
    """Markdown: per stage and in all, model-epochs, floor, wall and wall/floor."""
    rows = ["| stage | model-epochs | floor (s) | wall (s) | wall / floor |",
            "|---|---|---|---|---|"]
    for stage in epochs:
        floor = epochs[stage] * epoch_s / n_workers
        wall = walls.get(stage, 0.0)
        ratio = f"{wall / floor:.2f}" if floor else "—"
        rows.append(f"| {stage} | {epochs[stage]:,} | {floor:.0f} | {wall:.0f} | {ratio} |")
    floor = sum(epochs.values()) * epoch_s / n_workers
    rows.append(f"| sum of stages' own times | {sum(epochs.values()):,} | {floor:.0f} | "
                f"{sum(walls.values()):.0f} | {sum(walls.values()) / floor:.2f} |")
    rows.append(f"| **the whole `dvc repro`** | | {floor:.0f} | {total_wall:.0f} | "
                f"**{total_wall / floor:.2f}** |")
    # The oracle trains nothing and is not overhead: it is the ground truth #23 added after
    # #24 set its target, its cost set by its resolution (seeds, sets). Its own line above
    # shows it; the whole less it is the rest of the pipeline against its training.
    rest = total_wall - walls.get("oracle", 0.0)
    rows.append(f"| **the whole less the oracle's own time** | | {floor:.0f} | {rest:.0f} | "
                f"**{rest / floor:.2f}** |")
    return "\n".join(rows)


def pair_slowdown(project: Path, rounds: int = 3) -> None:
    """The 1-thread epoch alone and as two processes at once, interleaved: how much a
    worker's epoch slows when the other core is busy too (the floor assumes it does not).
    The pair start together; their timed epochs overlap as far as their start-ups match."""
    alone, pair = [], []
    for _ in range(rounds):
        alone.append(read_machine(project).epoch_s)
        with ThreadPoolExecutor(2) as ex:  # two subprocesses; the threads only wait
            pair.append(statistics.mean(r.epoch_s for r in ex.map(read_machine,
                                                                     [project] * 2)))
    a, b = statistics.median(alone), statistics.median(pair)
    print(f"epoch alone: {', '.join(f'{t:.2f}' for t in alone)} s; two at once (mean of "
          f"the pair): {', '.join(f'{t:.2f}' for t in pair)} s; medians {a:.2f} and "
          f"{b:.2f}: {b / a:.2f}x")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if len(sys.argv) == 2 else 2)
    if sys.argv[1] == "--pair":
        pair_slowdown(Path(sys.argv[2]))
        return
    project, log = Path(sys.argv[1]), Path(sys.argv[2]).read_text()
    cfg = load_config(project / "params.yaml")
    readings = [read_machine(project) for _ in range(3)]
    epoch_s, n = statistics.median(r.epoch_s for r in readings), worker_count(cfg)
    walls = stage_walls(log)
    print(f"1-thread epoch of the {cfg.model}: {epoch_s:.2f} s (median of "
          f"{', '.join(f'{r.epoch_s:.2f}' for r in readings)}); 1-thread sgemm "
          f"{statistics.median(r.sgemm_gflops for r in readings):.0f} GFLOP/s; {n} workers\n")
    wall = float(sys.argv[3]) if len(sys.argv) > 3 else sum(walls.values())
    print(table(walls, model_epochs(project), epoch_s, n, wall))


if __name__ == "__main__":
    main()
