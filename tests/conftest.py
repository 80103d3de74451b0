"""Shared fixtures: real MNIST from the local mirror, cut into small slices for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prunelab.config import load_config
from prunelab.cpu import pin_cpu_capability
from prunelab.data import Split, fetch_mnist, load_test, load_train_val

ROOT = Path(__file__).resolve().parents[1]
# What `prunelab` does before any tensor work: the tests that compare a model computed
# in-process with one a `prunelab` or `dvc repro` subprocess saved run the same kernels.
pin_cpu_capability(load_config(ROOT / "params.yaml").compute.cpu_capability)
# The PostgreSQL that the distributed-mode tests use for real; overridable.
PG_URL = os.environ.get("PRUNELAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# The local mirror beside the checkout (see params.yaml data.sources); overridable.
MIRROR = Path(os.environ.get("PRUNELAB_MNIST_MIRROR", ROOT.parent / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The real PostgreSQL; skipped where absent unless PRUNELAB_REQUIRE_POSTGRES=1 (CI)."""
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(PG_URL).connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except Exception as exc:  # noqa: BLE001 (any failure means: no usable server)
        reason = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}"
        if os.environ.get("PRUNELAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (PRUNELAB_REQUIRE_POSTGRES=1 makes this a failure)")
        pytest.skip(f"{reason}; set PRUNELAB_TEST_POSTGRES to a server URL to run these")
    return PG_URL


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "train-labels-idx1-ubyte.gz").is_file():
        pytest.fail(f"MNIST mirror not found at {MIRROR}; set PRUNELAB_MNIST_MIRROR to a folder "
                    "holding the four MNIST .gz files")
    return MIRROR


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    fetch_mnist([str(mirror)], root)
    return root


@pytest.fixture(scope="session")
def small_splits(mnist_root: Path) -> tuple[Split, Split, Split]:
    """3,000 training, 1,000 validation and 2,000 test images: real data, seconds to train."""
    train, val = load_train_val(mnist_root, val_size=1000, split_seed=0, train_limit=3000)
    return train, val, load_test(mnist_root, limit=2000)


@pytest.fixture(scope="session")
def trained_mlp(small_splits: tuple[Split, Split, Split]):  # noqa: ANN201 (a Net)
    """The mlp trained for 2 epochs on the slice: a real, small, trained model."""
    from prunelab.models import build_model
    from prunelab.training import fit, seed_everything

    from helpers import shipped_fit

    train, val, _ = small_splits
    seed_everything(0)
    model = build_model("mlp")
    fit(model, train, val, shipped_fit(lr=0.05, epochs=2, batch_size=64), seed=0)
    return model
