"""Training, fine-tuning and evaluation loops over in-memory tensors.

The loss is CrossEntropyLoss on logits (the model applies no softmax). Fine-tuning is the
same loop: masks from torch.nn.utils.prune are applied in the forward pass, so a cut
weight stays exactly zero whatever the optimizer does to the underlying `weight_orig`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prunelab.data import Split, batches


@dataclass(frozen=True)
class FitSettings:
    """One training or fine-tuning run. No defaults: values come from params.yaml
    (`prunelab.settings`), so nothing here can disagree with it."""

    lr: float
    epochs: int
    batch_size: int
    momentum: float
    weight_decay: float
    optimizer: str  # "sgd" | "adam"
    penalty: str  # "l1" | "l2" | "none": added to the loss on the (masked) weights
    penalty_weight: float
    eval_batch_size: int
    lr_schedule: str  # "constant" | "cosine": annealed to 0 over the epochs


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float
    lr: float  # the learning rate the epoch ran at


def make_optimizer(model: nn.Module, s: FitSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def weight_penalty(model: nn.Module, kind: str) -> torch.Tensor:
    """Sum of |w| (l1) or w² (l2) over the effective weights of Linear/Conv layers."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            total = total + (m.weight.abs().sum() if kind == "l1" else m.weight.pow(2).sum())
    return total


def train_epoch(
    model: nn.Module, data: Split, opt: torch.optim.Optimizer, s: FitSettings,
    generator: torch.Generator, on_step: Callable[[], None] | None = None,
) -> float:
    """One pass over `data` in shuffled mini-batches; returns the mean training loss.
    `on_step` runs after every optimizer step (pruning during fine-tuning moves masks)."""
    model.train()
    total, n = torch.zeros((), device=data.x.device), 0
    for x, y in batches(data, s.batch_size, generator):
        loss = F.cross_entropy(model(x), y)
        if s.penalty != "none" and s.penalty_weight > 0:
            loss = loss + s.penalty_weight * weight_penalty(model, s.penalty)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch's stub leaves it unannotated
        opt.step()
        if on_step is not None:
            on_step()
        total += loss.detach() * len(y)  # stays on device: no sync per step
        n += len(y)
    return float(total) / max(n, 1)


class Evaluation(NamedTuple):
    loss: float  # mean cross-entropy
    accuracy: float  # in [0, 1]


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, batch_size: int = 2000) -> Evaluation:
    """Mean cross-entropy loss and accuracy over `data`."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in batches(data, batch_size):
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return Evaluation(loss_sum / max(len(data), 1), correct / max(len(data), 1))


@torch.no_grad()
def correct(model: nn.Module, data: Split, batch_size: int = 2000) -> torch.Tensor:
    """Per example of `data`, in order: does the model's top class match the label."""
    model.eval()
    return torch.cat([model(x).argmax(1) == y for x, y in batches(data, batch_size)])


def fit(
    model: nn.Module, train: Split, val: Split, s: FitSettings, seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None, desc: str = "train",
    on_step: Callable[[], None] | None = None,
) -> list[EpochResult]:
    """Train for `s.epochs` epochs, evaluating on `val` after each; deterministic per seed."""
    generator = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, s)
    # Stepped once per epoch: the first epoch runs at `s.lr`, the last near 0.
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.epochs)
                if s.lr_schedule == "cosine" else None)
    history: list[EpochResult] = []
    bar = tqdm(range(1, s.epochs + 1), desc=desc, unit="epoch", leave=False, disable=None)
    for epoch in bar:
        lr = float(opt.param_groups[0]["lr"])
        start = time.perf_counter()
        train_loss = train_epoch(model, train, opt, s, generator, on_step)
        seconds = time.perf_counter() - start
        if schedule is not None:
            schedule.step()
        val_loss, val_acc = evaluate(model, val, s.eval_batch_size)
        result = EpochResult(epoch, train_loss, val_loss, val_acc, seconds, lr)
        history.append(result)
        bar.set_postfix(loss=f"{train_loss:.4f}", val_acc=f"{val_acc:.4f}")
        if on_epoch is not None:
            on_epoch(result)
    return history


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (model initialisation) and ask for deterministic kernels."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
