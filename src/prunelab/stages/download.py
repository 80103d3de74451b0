"""`prunelab download`: fetch and verify MNIST into data/MNIST/raw."""

from __future__ import annotations

import os

from prunelab.config import Config
from prunelab.data import DownloadError, fetch_mnist

# A local folder with the four .gz files, tried before data.sources: the one setting that
# serves both the pipeline and the tests (tests/conftest.py reads it too) on a machine
# without internet. Content is verified by MD5 whatever the source, so outputs do not
# depend on it.
MIRROR_ENV = "PRUNELAB_MNIST_MIRROR"


def run(cfg: Config) -> None:
    mirror = os.environ.get(MIRROR_ENV)
    sources = ([mirror] if mirror else []) + list(cfg.data.sources)
    try:
        out = fetch_mnist(sources, cfg.data.root, timeout=cfg.data.timeout_s)
    except DownloadError as exc:  # the library knows its sources, not this variable
        raise DownloadError(f"{exc} Or set {MIRROR_ENV} to a folder holding them (tried "
                            "first).") from None
    print(f"MNIST verified in {out}")
