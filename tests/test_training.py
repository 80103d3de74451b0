"""Training on a real slice of MNIST: it learns, and it is deterministic."""

from __future__ import annotations

import torch

from prunelab.data import Split
from prunelab.models import build_model
from prunelab.training import evaluate, fit, seed_everything

from helpers import shipped_fit

SETTINGS = shipped_fit(lr=0.05, epochs=3, batch_size=64, lr_schedule="constant")


def train_once(splits: tuple[Split, ...], seed: int) -> tuple[torch.nn.Module, float]:
    train, val, test = splits
    seed_everything(seed)
    model = build_model("mlp")
    fit(model, train, val, SETTINGS, seed)
    return model, evaluate(model, test).accuracy


def test_short_training_reaches_real_accuracy(small_splits: tuple[Split, ...]) -> None:
    model, test_acc = train_once(small_splits, seed=0)
    # 3k images, 3 epochs: chance is 10%; a working MLP is above 88% on held-out images.
    assert test_acc > 0.88
    train_acc = evaluate(model, small_splits[0]).accuracy
    assert train_acc > test_acc - 0.02


def test_same_seed_same_weights_other_seed_differs(small_splits: tuple[Split, ...]) -> None:
    a, acc_a = train_once(small_splits, seed=1)
    b, acc_b = train_once(small_splits, seed=1)
    c, _ = train_once(small_splits, seed=2)
    for (ka, va), (_, vb), (_, vc) in zip(
        a.state_dict().items(), b.state_dict().items(), c.state_dict().items(), strict=True
    ):
        assert torch.equal(va, vb), ka
        assert not torch.equal(va, vc), ka
    assert acc_a == acc_b


def test_cosine_schedule_anneals_per_epoch_and_still_learns(
    small_splits: tuple[Split, ...],
) -> None:
    train, val, test = small_splits
    seed_everything(0)
    model = build_model("mlp")
    cosine = shipped_fit(lr=0.1, epochs=4, batch_size=64, lr_schedule="cosine")
    history = fit(model, train, val, cosine, seed=0)
    # lr_e = 0.1 · (1 + cos(π e / 4)) / 2 for e = 0..3, worked by hand.
    assert [round(r.lr, 5) for r in history] == [0.1, 0.08536, 0.05, 0.01464]
    assert evaluate(model, test).accuracy > 0.88
    constant = fit(build_model("mlp"), train, val, SETTINGS, seed=0)
    assert [r.lr for r in constant] == [SETTINGS.lr] * SETTINGS.epochs
