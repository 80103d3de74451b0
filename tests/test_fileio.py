"""Atomic writes leave files and folders as open() and mkdir would: readable by whoever
the umask lets read them (metrics, reports, data and models are for others too)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from prunelab.artifacts import MASK, PRUNED, save_pruned
from prunelab.models import build_model, load_model
from prunelab.plumbing.fileio import atomic_dir, write_bytes, write_json
from prunelab.prune.granularity import Pruned
from prunelab.prune.masks import prunable_names


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_honour_the_umask(tmp_path: Path, umask: int) -> None:
    write_json(tmp_path / "metrics" / "m.json", {"a": 1})
    write_bytes(tmp_path / "data.bin", b"x")
    with atomic_dir(tmp_path / "search") as tmp:
        write_json(tmp / "c.json", {"b": 2})
    assert mode(tmp_path / "metrics" / "m.json") == 0o666 & ~umask
    assert mode(tmp_path / "data.bin") == 0o666 & ~umask
    assert mode(tmp_path / "search") == 0o777 & ~umask
    assert mode(tmp_path / "search" / "c.json") == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "metrics", "search"]


def test_saved_models_and_masks_honour_the_umask(tmp_path: Path, umask: int) -> None:
    """safetensors' own save_file creates its files 0600 whatever the umask."""
    model = build_model("mlp")
    kept = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()
            if n in prunable_names(model, False)}
    save_pruned(Pruned(model, kept, {}), tmp_path)
    assert mode(tmp_path / PRUNED) == 0o666 & ~umask
    assert mode(tmp_path / MASK) == 0o666 & ~umask
    assert torch.equal(load_model(tmp_path / PRUNED).body[2].weight, model.body[2].weight)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "m.json", {"a": object()})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
