"""`prunelab <stage>`: one subcommand per pipeline stage, all reading params.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunelab.config import Config, ConfigError, Granularity, Method, load_config
from prunelab.errors import PrunelabError


def _method_args(p: argparse.ArgumentParser, baseline: str = "--baseline") -> None:
    """The arguments of every per-(method, granularity) stage."""
    p.add_argument("--method", required=True, choices=list(Method.__args__))
    p.add_argument("--granularity", required=True, choices=list(Granularity.__args__))
    p.add_argument(baseline, type=Path, required=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunelab", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    sub = p.add_subparsers(dest="stage", required=True)
    sub.add_parser("download", help="fetch and verify MNIST into data.root")
    t = sub.add_parser("train", help="train the baseline model")
    t.add_argument("--model-out", type=Path, required=True)
    t.add_argument("--metrics-out", type=Path, required=True)
    t.add_argument("--seed", type=int, help="training seed (default: params' seed)")
    se = sub.add_parser("search", help="Optuna study choosing a method's sparsity on val")
    _method_args(se)
    se.add_argument("--out", type=Path, required=True, help="JSON file for the chosen sparsity")
    se.add_argument("--workers", type=int,
                    help="local worker processes on the one study (default: search.workers)")
    for name, text in [("prune", "prune the baseline with one method at one granularity"),
                       ("finetune", "fine-tune a pruned model with its cut weights held at 0")]:
        s = sub.add_parser(name, help=text)
        _method_args(s)
        s.add_argument("--out-dir", type=Path, required=True)
        s.add_argument("--metrics-out", type=Path, required=True)
        s.add_argument("--choice", type=Path,
                       help="search result whose sparsity (and lr) replace params.yaml's")
        if name == "finetune":
            s.add_argument("--prune-metrics", type=Path, required=True)
    sw = sub.add_parser("sweep", help="one method over sweep.ratios x sweep.seeds")
    _method_args(sw, "--baselines")
    sw.add_argument("--out", type=Path, required=True, help="JSON file of every point")
    sw.add_argument("--workers", type=int,
                    help="local worker processes (default: sweep.workers)")
    o = sub.add_parser("oracle", help="each criterion's scores against the true damage")
    o.add_argument("--baselines", type=Path, required=True,
                   help="folder of <seed>.safetensors and <seed>.json from `train --seed`")
    o.add_argument("--out-dir", type=Path, required=True)
    r = sub.add_parser("report", help="table, curves, verdicts and MLflow comparison run")
    r.add_argument("--sweep-dir", type=Path, required=True)
    r.add_argument("--search-dir", type=Path, required=True)
    r.add_argument("--prune-metrics-dir", type=Path, required=True)
    r.add_argument("--finetune-metrics-dir", type=Path, required=True)
    r.add_argument("--oracle", type=Path, required=True, help="oracle.json of `oracle`")
    r.add_argument("--out-dir", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.params)  # every stage validates all params before any work
    except ConfigError as exc:
        print(f"prunelab: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_stage(args, cfg)
    except PrunelabError as exc:
        print(f"prunelab {args.stage}: {exc}", file=sys.stderr)
        return 1


def _run_stage(args: argparse.Namespace, cfg: Config) -> int:
    if args.stage == "download":
        from prunelab.stages import download

        download.run(cfg)
    elif args.stage == "train":
        from prunelab.stages import train

        train.run(cfg, args.model_out, args.metrics_out, args.seed)
    elif args.stage == "search":
        from prunelab.stages import search

        workers = cfg.search.workers if args.workers is None else args.workers
        if workers < 1:
            print("prunelab search: --workers must be at least 1", file=sys.stderr)
            return 2
        search.run(cfg, Path(args.params), args.method, args.granularity, args.baseline,
                   args.out, workers)
    elif args.stage == "prune":
        from prunelab.stages import prune

        prune.run(cfg, args.method, args.granularity, args.baseline, args.out_dir,
                  args.metrics_out, args.choice)
    elif args.stage == "finetune":
        from prunelab.stages import finetune

        finetune.run(cfg, args.method, args.granularity, args.out_dir, args.baseline,
                     args.prune_metrics, args.metrics_out, args.choice)
    elif args.stage == "sweep":
        from prunelab.stages import sweep

        workers = cfg.sweep.workers if args.workers is None else args.workers
        if workers < 1:
            print("prunelab sweep: --workers must be at least 1", file=sys.stderr)
            return 2
        sweep.run(cfg, args.method, args.granularity, args.baselines, args.out, workers)
    elif args.stage == "oracle":
        from prunelab.stages import oracle

        oracle.run(cfg, args.baselines, args.out_dir)
    elif args.stage == "report":
        from prunelab.stages import report

        report.run(cfg, args.sweep_dir, args.search_dir, args.prune_metrics_dir,
                   args.finetune_metrics_dir, args.oracle, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
