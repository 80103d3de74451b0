"""`prunelab download`: fetch and verify MNIST into data/MNIST/raw."""

from __future__ import annotations

from prunelab.config import Config
from prunelab.data import fetch_mnist


def run(cfg: Config) -> None:
    out = fetch_mnist(cfg.data.sources, cfg.data.root, timeout=cfg.data.timeout_s)
    print(f"MNIST verified in {out}")
