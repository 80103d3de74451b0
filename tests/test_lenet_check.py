"""The held-out LeNet check: its selection phase never reads the test split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, small_params


def load_script():  # noqa: ANN201 (a module)
    spec = importlib.util.spec_from_file_location("lenet_check", ROOT / "scripts/lenet_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_selection_never_loads_the_test_split(
    tmp_path: Path, mirror: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prunelab.data
    import prunelab.settings

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("the selection read the test split")

    monkeypatch.setattr(prunelab.data, "load_test", forbidden)
    monkeypatch.setattr(prunelab.settings, "load_test", forbidden)
    script = load_script()
    params = small_params(mirror, **{"data.root": str(mnist_root), "data.train_limit": 600,
                                     "prune.calibration_batches": 2})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(script, "EPOCHS", {"lenet300": 1, "lenet5": 1})
    jobs = script.selection_jobs(str(tmp_path / "params.yaml"), "lenet300")
    assert jobs and not any(test for *_, test in jobs)  # every selection job: val only
    row = script.run_one(jobs[0])  # in-process, so the patched loader is the one it meets
    assert set(row) >= {"base_val_error", "ratios"} and "base_test_error" not in row
    assert all(set(r) == {"compression_ratio", "val_error"} for r in row["ratios"].values())


def test_han_allocation_keeps_each_layer_s_share(
    tmp_path: Path, mirror: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Han et al.'s per-layer allocation: after the 4 rounds and their fine-tuning, each
    of LeNet-300-100's layers keeps exactly its Table 2 share of weights (8, 9, 26 %)."""
    from prunelab.models import baked, build_model
    from prunelab.settings import train_val_splits

    script = load_script()
    params = small_params(mirror, **{"data.root": str(mnist_root), "data.train_limit": 600})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = script.config(str(tmp_path / "params.yaml"), "lenet300", "constant-lr0.01")
    train, val = train_val_splits(cfg)
    pruned = baked(script.han_layers(build_model("lenet300"), train, val,
                                     script.HAN_KEPT["lenet300"], cfg, seed=0))
    kept = [float((m.weight != 0).float().mean()) for m in
            (pruned.body[2], pruned.body[4], pruned.body[6])]
    assert kept == pytest.approx([0.08, 0.09, 0.26], abs=1e-3)
