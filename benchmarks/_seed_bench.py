"""What the benchmarks over one seed's baseline share: their command line (`--seed`,
`--repeats`), one torch thread as the stages run, and the project's config and splits."""

from __future__ import annotations

import argparse

import torch

from prunelab.config import Config, load_config
from prunelab.data import Split
from prunelab.settings import train_val_splits


def seed_setup(doc: str, repeats: int) -> tuple[argparse.Namespace, Config, Split, Split]:
    """(arguments, config, train split, validation split) from params.yaml in the cwd."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=repeats)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config("params.yaml")
    return args, cfg, *train_val_splits(cfg)
