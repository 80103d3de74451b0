"""`prunelab <stage>`: one subcommand per pipeline stage, all reading params.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunelab.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunelab", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    sub = p.add_subparsers(dest="stage", required=True)
    sub.add_parser("download", help="fetch and verify MNIST into data.root")
    t = sub.add_parser("train", help="train the baseline model")
    t.add_argument("--model-out", type=Path, required=True)
    t.add_argument("--metrics-out", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.params)  # every stage validates all params before any work
    except ConfigError as exc:
        print(f"prunelab: {exc}", file=sys.stderr)
        return 2
    if args.stage == "download":
        from prunelab.stages import download

        download.run(cfg)
    elif args.stage == "train":
        from prunelab.stages import train

        train.run(cfg, args.model_out, args.metrics_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
