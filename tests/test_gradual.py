"""Pruning during fine-tuning (gradual.py, criteria/during_finetuning.py): the schedule and
the movement score by hand, and both methods run for real on a slice of MNIST."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunelab.data import Split
from prunelab.models import Net, baked
from prunelab.prune.gradual import Gate, cubic_sparsity, prune_during_finetuning
from prunelab.prune.granularity import GRANULARITIES
from prunelab.prune.procedure import prune_and_finetune


def test_cubic_schedule_by_hand() -> None:
    """Zhu & Gupta's s_t = s_f·(1 − (1 − t/T)³) with s_f = 0.9, T = 10."""
    got = [cubic_sparsity(t, 0.9, 10) for t in (0, 2, 5, 10, 12)]
    want = [0.0, 0.9 * (1 - 0.8**3), 0.9 * 0.875, 0.9, 0.9]  # 0, 0.4392, 0.7875, 0.9, 0.9
    assert got == pytest.approx(want)


def test_movement_score_three_steps_by_hand() -> None:
    """A 2×2 layer, W = [[1, −2], [3, 0.5]], mask [[1, 0], [1, 1]], x = [2, 1], loss
    L = v·(W′x) with v = [1, −1]: ∂L/∂W′ = v xᵀ = [[2, 1], [−2, −1]] at every step.
    S ← S − ∂L/∂W′ ⊙ W; W ← W − 0.1·(∂L/∂W′ ⊙ M) (plain SGD):
      step 1: S = [[−2, 2], [6, 0.5]],       W = [[0.8, −2], [3.2, 0.6]]
      step 2: S = [[−3.6, 4], [12.4, 1.1]],  W = [[0.6, −2], [3.4, 0.7]]
      step 3: S = [[−4.8, 6], [19.2, 1.8]],  W = [[0.4, −2], [3.6, 0.8]]
    The cut weight (0, 1) never moves, yet its S grows: a top-2 cut by S brings it back."""
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    gate = Gate(layer.weight.detach())
    gate.mask.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    parametrize.register_parametrization(layer, "weight", gate)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x, v = torch.tensor([[2.0, 1.0]]), torch.tensor([1.0, -1.0])
    for _ in range(3):
        opt.zero_grad()
        (layer(x)[0] * v).sum().backward()
        opt.step()
    torch.testing.assert_close(gate.movement, torch.tensor([[-4.8, 6.0], [19.2, 1.8]]))
    torch.testing.assert_close(layer.parametrizations.weight.original.detach(),
                               torch.tensor([[0.4, -2.0], [3.6, 0.8]]))
    from prunelab.prune.masks import select

    live = GRANULARITIES["weight"].criterion("movement", None, 0).live
    scores = live(Net.__new__(Net), {"w": gate.movement})  # type: ignore[misc]
    keep = select(scores, sparsity=0.5, scope="layer", normalize=False)["w"]
    assert keep.tolist() == [[False, True], [True, False]]


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_the_cut_follows_the_schedule_and_ends_at_the_target(
        granularity: str, trained_mlp: Net, small_splits: tuple[Split, Split, Split]) -> None:
    """On real images: at each update the masks the method sees carry the sparsity the
    schedule set at the update before; the end model is at the target."""
    from helpers import shipped_fit, shipped_prune

    train, val, _ = small_splits
    ft = shipped_fit(epochs=2, batch_size=100)  # 30 steps an epoch; T = round(0.5·60) = 30
    s = shipped_prune("gmp", granularity, sparsity=0.75, gradual_interval=7, gradual_end=0.5)
    g = GRANULARITIES[granularity]
    seen: list[float] = []
    live = g.criterion_for(s).live

    def watching(model: Net, movement: dict[str, Any]) -> Any:
        mask = model.body[2].parametrizations.weight[0].mask  # the first layer's gate
        if granularity == "weight":
            seen.append(1 - float(mask.mean()))
        else:  # the hidden layer's rows cut
            seen.append(1 - float(mask[:, 0].ne(0).float().mean()))
        return live(model, movement)  # type: ignore[misc]

    pruned = prune_during_finetuning(baked(trained_mlp), train, val, s, ft, 0, watching)
    steps = [7, 14, 21, 28, 30]
    expect = [0.0] + [cubic_sparsity(t, 0.75, 30) for t in steps[:-1]]
    tol = 1e-3 if granularity == "weight" else 1 / 128  # whole units: 1 of 128
    assert seen == pytest.approx(expect, abs=tol)
    final = pruned.kept["body.2.weight"] if granularity == "weight" else pruned.kept["units.0"]
    assert 1 - float(final.float().mean()) == pytest.approx(0.75, abs=tol)


@pytest.mark.parametrize("method", ["gmp", "movement"])
@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_gradual_methods_prune_and_finetune_for_real(
        method: str, granularity: str, trained_mlp: Net,
        small_splits: tuple[Split, Split, Split]) -> None:
    """Through the one procedure every caller uses: no model before fine-tuning is shown
    to `on_pruned`; the result is at the target, its cut weights exactly 0 (or the hidden
    layer smaller), and it still classifies far above chance."""
    from helpers import shipped_fit, shipped_prune

    train, val, _ = small_splits
    s = shipped_prune(method, granularity, sparsity=0.75, round_to=16)
    seen: list[object] = []
    pruned = prune_and_finetune(trained_mlp, train, val, s, shipped_fit(epochs=1), 0,
                                on_pruned=seen.append)
    assert seen == []
    if granularity == "weight":
        w = pruned.model.body[2].weight
        assert float((w == 0).float().mean()) == pytest.approx(0.75, abs=1e-3)
        assert torch.equal(w == 0, ~pruned.kept["body.2.weight"])
    else:
        assert pruned.model.spec.widths == (32,)
    from prunelab.training import evaluate
    assert evaluate(pruned.model, val).accuracy > 0.5


def test_the_registry_kind_says_which_methods_cut_while_fine_tuning() -> None:
    """A registration's kind "during fine-tuning" (no iterative series for it) is declared
    by exactly the methods whose criterion prunes during fine-tuning, at both
    granularities."""
    from prunelab.criteria.registry import registered
    from prunelab.prune.procedure import prunes_during_finetuning

    from helpers import shipped_prune

    regs = registered()
    declared = {m for m, r in regs.items() if r.kind == "during fine-tuning"}
    assert declared == {"gmp", "movement"}
    for granularity in ("weight", "neuron"):
        live = {m for m in regs
                if prunes_during_finetuning(shipped_prune(m, granularity, sparsity=0.5))}
        assert live == declared
