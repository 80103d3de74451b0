"""Loading and splitting real MNIST."""

from __future__ import annotations

from pathlib import Path

import torch

from prunelab.data import DataError, Split, batches, load_test, load_train_val, raw_dir, read_idx


def image_set(split: Split) -> set[bytes]:
    return {bytes(img.mul(255).round().to(torch.uint8).flatten().tolist()) for img in split.x}


def test_train_val_test_are_disjoint_by_content(mnist_root: Path) -> None:
    # MNIST has no exact duplicate image within or across its files, so comparing pixels
    # proves the split is disjoint, not just the indices.
    train, val = load_train_val(mnist_root, val_size=2000, split_seed=3, train_limit=4000)
    test = load_test(mnist_root, limit=2000)
    tr, va, te = image_set(train), image_set(val), image_set(test)
    assert len(tr) == 4000 and len(va) == 2000 and len(te) == 2000
    assert not tr & va and not tr & te and not va & te


def test_full_split_sizes_and_value_range(mnist_root: Path) -> None:
    train, val = load_train_val(mnist_root, val_size=5000, split_seed=0)
    assert (len(train), len(val)) == (55000, 5000)
    assert train.x.shape[1:] == (1, 28, 28) and train.x.dtype == torch.float32
    assert 0.0 == float(train.x.min()) and float(train.x.max()) == 1.0
    assert set(train.y.unique().tolist()) == set(range(10))


def test_split_depends_on_its_seed_only(mnist_root: Path) -> None:
    _, a = load_train_val(mnist_root, 500, split_seed=1)
    _, b = load_train_val(mnist_root, 500, split_seed=1)
    _, c = load_train_val(mnist_root, 500, split_seed=2)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_shuffled_batches_cover_every_example_once(small_splits: tuple[Split, ...]) -> None:
    train = small_splits[0]
    seen = torch.cat([y for _, y in batches(train, 64, torch.Generator().manual_seed(0))])
    assert len(seen) == len(train)
    assert torch.equal(seen.sort().values, train.y.sort().values)


def test_our_idx_reader_gives_what_torchvision_reads(mnist_root: Path, tmp_path: Path) -> None:
    """We parse the idx files ourselves (torchvision's import costs ~3 s per stage)."""
    import pytest
    from torchvision.datasets import MNIST

    for train in (True, False):
        theirs = MNIST(str(mnist_root), train=train, download=False)
        prefix = "train" if train else "t10k"
        assert torch.equal(read_idx(raw_dir(mnist_root) / f"{prefix}-images-idx3-ubyte"),
                           theirs.data)
        assert torch.equal(read_idx(raw_dir(mnist_root) / f"{prefix}-labels-idx1-ubyte"),
                           theirs.targets.to(torch.uint8))
    bad = tmp_path / "not-idx"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))  # a .gz header, not idx
    with pytest.raises(DataError, match="not an unsigned-byte idx file"):
        read_idx(bad)
