"""`prunelab <stage>`: one subcommand per pipeline stage, all reading params.yaml."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunelab.config import Config, ConfigError, load_config
from prunelab.cpu import pin_cpu_capability
from prunelab.errors import PrunelabError
from prunelab.plumbing.retry import StoreLost


def _pair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", help="only this method (default: every one in prune.methods)")
    p.add_argument("--granularity", choices=["weight", "neuron"],
                   help="only this granularity (default: every one in prune.granularities)")


def _pairs(a: argparse.Namespace, cfg: Config) -> list[tuple[str, str]]:
    from prunelab.methods import pairs

    chosen = [(m, g) for m, g in pairs(cfg) if a.method in (None, m)
              and a.granularity in (None, g)]
    if not chosen:
        raise ConfigError(f"--method {a.method} --granularity {a.granularity}: no such pair "
                          "among prune.methods x prune.granularities")
    return chosen


def _workers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int,
                   help="local worker processes (default: compute.workers in params.yaml)")


def _path(p: argparse.ArgumentParser, flag: str, default: str | None, what: str) -> None:
    """A path option whose default is the path dvc.yaml passes (None: one that depends on
    params.yaml, filled in by `_baseline`)."""
    shown = default or "models/seeds/<seed>.safetensors, the `seed` of params.yaml"
    p.add_argument(flag, type=Path, default=None if default is None else Path(default),
                   help=f"{what} (default: {shown})")


def _baseline(a: argparse.Namespace, cfg: Config) -> Path:
    return a.baseline or Path("models/seeds") / f"{cfg.seed}.safetensors"


# Each stage: (one-line help, an example). `prunelab <stage> --help` shows both.
STAGES = {
    "download": ("fetch and verify MNIST into data.root", "prunelab download"),
    "criteria": ("write every registered criterion and its code's digest (what DVC watches "
                 "for a criterion's edit)", "prunelab criteria"),
    "train": ("train one baseline per seed in sweep.seeds", "prunelab train --workers 2"),
    "search": ("Optuna studies choosing each method's sparsity on the validation split",
               "prunelab search --method magnitude --granularity weight"),
    "prune": ("prune and fine-tune every method x granularity at its search's choice",
              "prunelab prune --method obs"),
    "sweep": ("every method x granularity x ratio x seed, as a queue shared by workers",
              "prunelab sweep      # run and collect; elsewhere: prunelab sweep --worker"),
    "oracle": ("each criterion's scores against the true damage of removing what it ranks",
               "prunelab oracle --workers 2"),
    "when": ("pruning at initialisation (when.methods x ratio x seed, with the sanity "
             "checks), as a queue shared by workers", "prunelab when      # elsewhere: "
             "prunelab when --worker"),
    "plan": ("say, per stage, the work `dvc repro` would compute and what it keeps, with "
             "the time it would take", "prunelab plan"),
    "report": ("table, curves, verdicts, reports/report.md and the MLflow comparison run",
               "prunelab report"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prunelab", description=__doc__,
        epilog="Every path defaults to the one dvc.yaml passes; `dvc repro` runs the stages "
               "in order. Example: prunelab --params params.yaml report")
    p.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    # The same option after the subcommand (`prunelab train --params x.yaml`); SUPPRESS so
    # that leaving it out there keeps the value given before the subcommand.
    params_after = argparse.ArgumentParser(add_help=False)
    params_after.add_argument("--params", default=argparse.SUPPRESS,
                              help="parameters file (default: params.yaml)")
    sub = p.add_subparsers(dest="stage", required=True, metavar="<stage>")
    stage = {}
    for name, (text, example) in STAGES.items():
        stage[name] = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                                     epilog=f"example: {example}", parents=[params_after])
    _path(stage["criteria"], "--out", "criteria.json", "the manifest file")
    t = stage["train"]
    _path(t, "--out-dir", "models/seeds", "folder for <seed>.safetensors and <seed>.json")
    _path(t, "--metrics-out", "metrics/baseline.json",
          "metrics of the baseline of params' seed (the searched one)")
    _workers_arg(t)
    se = stage["search"]
    _path(se, "--baseline", None, "the baseline the search prunes")
    _path(se, "--out-dir", "search", "folder for one <method>-<granularity>.json choice per "
          "study")
    _pair_args(se)
    _workers_arg(se)
    pr = stage["prune"]
    _path(pr, "--baseline", None, "the baseline it prunes")
    pr.add_argument("--choices", type=Path,
                    help="folder of the search's <method>-<granularity>.json, whose sparsity "
                         "(and lr) replace params.yaml's (dvc.yaml passes search; without "
                         "it, params.yaml's prune settings are used as they are)")
    _path(pr, "--out-dir", "models/pruned", "folder for one <method>-<granularity>/ of model "
          "files each")
    _path(pr, "--prune-metrics-dir", "metrics/prune", "folder for each one's metrics before "
          "fine-tuning")
    _path(pr, "--finetune-metrics-dir", "metrics/finetune", "folder for each one's metrics "
          "after fine-tuning")
    _pair_args(pr)
    _workers_arg(pr)
    sw = stage["sweep"]
    _path(sw, "--baselines", "models/seeds", "folder of <seed>.safetensors and <seed>.json "
          "from `train`")
    sw.add_argument("--out-dir", type=Path,
                    help="folder for one <method>-<granularity>.json of points per method "
                         "(default: sweep; not with --worker)")
    sw.add_argument("--worker", action="store_true",
                    help="only help: compute queued points of a sweep that `dvc repro` (or "
                         "`prunelab sweep`) started on the shared storage; write nothing")
    _workers_arg(sw)
    o = stage["oracle"]
    _path(o, "--baselines", "models/seeds", "folder of <seed>.safetensors and <seed>.json "
          "from `train`")
    _path(o, "--out-dir", "oracle", "folder for oracle.json, sets.json and scatter.safetensors")
    _path(o, "--truth-dir", "models/truth", "where each seed's ground truth is kept")
    _workers_arg(o)
    wh = stage["when"]
    _path(wh, "--baselines", "models/seeds", "folder of <seed>.json from `train` (each "
          "seed's dense test accuracy)")
    wh.add_argument("--out-dir", type=Path,
                    help="folder for points.json (default: when; not with --worker)")
    wh.add_argument("--worker", action="store_true",
                    help="only help: compute queued points of a study that `dvc repro` (or "
                         "`prunelab when`) started on the shared storage; write nothing")
    _workers_arg(wh)
    _workers_arg(stage["plan"])
    r = stage["report"]
    _path(r, "--sweep-dir", "sweep", "the sweep's points, from `sweep`")
    _path(r, "--search-dir", "search", "the search's choices, from `search`")
    _path(r, "--prune-metrics-dir", "metrics/prune", "metrics before fine-tuning, from `prune`")
    _path(r, "--finetune-metrics-dir", "metrics/finetune", "metrics after fine-tuning, from "
          "`prune`")
    _path(r, "--oracle", "oracle/oracle.json", "oracle.json of `oracle` (sets.json beside it)")
    _path(r, "--when", "when/points.json", "the points at initialisation, from `when` (empty: "
          "no section)")
    _path(r, "--out-dir", "reports", "folder for report.md, the figures and the metrics")
    return p


def _tree(package: Path) -> dict[str, bytes]:
    return {str(f.relative_to(package)): f.read_bytes() for f in sorted(package.rglob("*.py"))}


def foreign_code(root: Path) -> str | None:
    """Why the prunelab this process imported is not the project's own `src/` (None when
    it is, or when the project has no src/). An editable install runs the tree it was
    installed from: a `dvc exp run --temp` copies the project, yet would run that tree, and
    any edit made there while the experiment runs (this happened: a run whose params
    predated a new param stopped mid-way)."""
    import prunelab

    mine, here = Path(prunelab.__file__).resolve().parent, (root / "src" / "prunelab").resolve()
    if not here.is_dir() or mine == here or _tree(mine) == _tree(here):
        return None
    return (f"the prunelab imported from {mine} differs from this project's {here}: the "
            "stages would run other code than the commit DVC records; run with "
            "PYTHONPATH=src (what a --temp experiment needs while that tree is edited), or "
            "install this project's own")


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    args = build_parser().parse_args(argv)
    if why := foreign_code(Path(args.params).resolve().parent):
        print(f"prunelab: {why}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.params)  # every stage validates all params before any work
        from prunelab.methods import check

        check(cfg)  # ... and the methods, settings and questions against the registry
    except ConfigError as exc:
        print(f"prunelab: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "workers", None) is not None and args.workers < 1:
        print(f"prunelab {args.stage}: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.stage in ("sweep", "when") and args.worker and args.out_dir is not None:
        print(f"prunelab {args.stage}: give --out-dir (run and collect) or --worker "
              "(help a running one), not both", file=sys.stderr)
        return 2
    if args.stage in ("sweep", "when") and not args.worker:
        args.out_dir = args.out_dir or Path(args.stage)
    pin_cpu_capability(cfg.compute.cpu_capability)  # before any tensor work, for workers too
    import torch

    torch.set_num_threads(cfg.compute.threads)  # and each worker process does the same
    try:
        _run_stage(args, cfg)
    except ConfigError as exc:  # an argument that names no pair: before any work
        print(f"prunelab: {exc}", file=sys.stderr)
        return 2
    except StoreLost as exc:
        if os.environ.get("PRUNELAB_DEBUG") == "1":
            raise
        command = " ".join(["prunelab", *(sys.argv[1:] if argv is None else argv)])
        print(f"prunelab {args.stage}: {exc}; what is done is kept there: run `{command}` "
              "(or `dvc repro`) again once it answers", file=sys.stderr)
        return 1
    except PrunelabError as exc:
        if os.environ.get("PRUNELAB_DEBUG") == "1":  # the traceback, for a bug report
            raise
        print(f"prunelab {args.stage}: {exc}", file=sys.stderr)
        return 1
    # The stage's own wall time, from the start of the command (imports not included):
    # benchmarks/pipeline.py reads it from `dvc repro`'s output.
    print(f"prunelab {args.stage}: done in {time.perf_counter() - start:.2f} s", flush=True)
    return 0


# How each stage's `run` is called from its parsed arguments (and the worker count); the
# stage's module is imported only when it runs, so a stage loads only what it needs.
STAGE_CALLS: dict[str, Callable[[argparse.Namespace, Config, int], tuple[Any, ...]]] = {
    "download": lambda a, cfg, w: (cfg,),
    "criteria": lambda a, cfg, w: (cfg, a.out),
    "train": lambda a, cfg, w: (cfg, Path(a.params), a.out_dir, a.metrics_out, w),
    "search": lambda a, cfg, w: (cfg, Path(a.params), _pairs(a, cfg), _baseline(a, cfg),
                                 a.out_dir, w),
    "prune": lambda a, cfg, w: (
        cfg, Path(a.params), _pairs(a, cfg),
        _baseline(a, cfg), a.choices, a.out_dir, a.prune_metrics_dir, a.finetune_metrics_dir, w,
        not (a.method or a.granularity)),
    "sweep": lambda a, cfg, w: (cfg, Path(a.params), a.baselines, a.out_dir, w),
    "oracle": lambda a, cfg, w: (cfg, Path(a.params), a.baselines, a.out_dir, w,
                                 a.truth_dir),
    "when": lambda a, cfg, w: (cfg, Path(a.params), a.baselines, a.out_dir, w),
    "plan": lambda a, cfg, w: (cfg, w),
    "report": lambda a, cfg, w: (cfg, a.sweep_dir, a.search_dir, a.prune_metrics_dir,
                                 a.finetune_metrics_dir, a.oracle, a.when, a.out_dir),
}


def _run_stage(args: argparse.Namespace, cfg: Config) -> None:
    from prunelab.workers import worker_count

    workers = getattr(args, "workers", None) or worker_count(cfg)
    stage = importlib.import_module(f"prunelab.stages.{args.stage}")
    stage.run(*STAGE_CALLS[args.stage](args, cfg, workers))


def entry() -> None:
    """The `prunelab` command: `main`, then exit without tearing the interpreter down.

    Finalising torch's, MLflow's and Optuna's thousands of modules is a large share of a
    short stage (BENCHMARKS.md). Everything a stage writes is complete when `main` returns (files
    renamed into place, MLflow runs ended, worker pools joined), so run the exit handlers,
    flush, and leave. In-process callers (tests) use `main`, which returns.
    """
    import atexit

    code = main()
    atexit._run_exitfuncs()  # public since Python 2 in all but name; e.g. MLflow's
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
