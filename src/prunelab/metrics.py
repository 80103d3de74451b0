"""What a pruned model costs: nonzero parameters, sparsity per layer, FLOPs, file size.

Sparsity is measured against the baseline's layer sizes, so a masked dense model and a
smaller neuron-pruned model are reported on one scale. Dense FLOPs come from
torch.utils.flop_counter for one image; effective FLOPs count only nonzero weights
(each layer's dense FLOPs times its weight density), what a sparse kernel could skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from prunelab.data import Split
from prunelab.models import ModelSpec, Net, baked, build_model, weighted_layers
from prunelab.prune.masks import prunable_names
from prunelab.prune.spec import PruneSettings
from prunelab.records import pack_correct
from prunelab.training import correct, evaluate


def _layer_flops(model: Net) -> dict[str, int]:
    """Dense FLOPs of each Linear/Conv layer for one 1×28×28 image."""
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28, device=device))
    counts = counter.get_flop_counts()
    return {prefix: int(sum(counts.get(f"Net.{prefix}", {}).values()))
            for prefix, _ in weighted_layers(model)}


@torch.no_grad()
def pruning_metrics(model: Net, baseline_spec: ModelSpec, prunable: list[str]) -> dict[str, Any]:
    """Sparsity overall (over the `prunable` weight names) and per layer, parameters
    remaining, compression ratio, dense and effective FLOPs."""
    m = baked(model)
    base = build_model(baseline_spec)
    base_weights = {f"{p}.weight": mod.weight.numel() for p, mod in weighted_layers(base)}
    base_params = sum(p.numel() for p in base.parameters())
    per_layer, cut, total = {}, 0, 0
    for prefix, mod in weighted_layers(m):
        name = f"{prefix}.weight"
        nonzero = int(mod.weight.count_nonzero())
        per_layer[name] = 1.0 - nonzero / base_weights[name]
        if name in prunable:
            cut += base_weights[name] - nonzero
            total += base_weights[name]
    nonzero_params = sum(int(p.count_nonzero()) for p in m.parameters())
    flops = _layer_flops(m)
    effective = sum(
        flops[p] * int(mod.weight.count_nonzero()) / mod.weight.numel()
        for p, mod in weighted_layers(m)
    )
    return {
        "sparsity": cut / total,
        "layer_sparsity": per_layer,
        "parameters_remaining": nonzero_params,
        "compression_ratio": base_params / nonzero_params,
        "dense_flops": sum(_layer_flops(base).values()),
        "flops": sum(flops.values()),
        "effective_flops": int(effective),
    }


def accuracies(model: Net, splits: dict[str, Split], batch_size: int,
               suffix: str = "") -> dict[str, float]:
    """{"val_accuracy<suffix>": ..., "test_accuracy<suffix>": ...} for the splits given."""
    return {f"{name}_accuracy{suffix}": evaluate(model, split, batch_size).accuracy
            for name, split in splits.items()}


def which_right(model: Net, splits: dict[str, Split], batch_size: int,
                suffix: str = "") -> dict[str, str]:
    """Which test and validation images `model` gets right (`val_correct<suffix>`, ...),
    so that the report's paired tests, and the power of a design, need no rerun."""
    return {f"{split}_correct{suffix}": pack_correct(
        correct(model, splits[split], batch_size).cpu().numpy()) for split in ("test", "val")}


def point_record(model: Net, baseline_spec: ModelSpec, s: PruneSettings,
                 measured: dict[str, Any]) -> dict[str, Any]:
    """The metrics record of one pruned model (prune stage, sweep points):
    what was asked (method, granularity, target), what it costs (`pruning_metrics`) and
    what it scores (`measured`: accuracies and the caller's own labels)."""
    prunable = prunable_names(build_model(baseline_spec), s.prune_output_layer)
    return {"method": s.method, "granularity": s.granularity,
            "target_sparsity": s.sparsity, "threshold": s.threshold,
            **pruning_metrics(model, baseline_spec, prunable), **measured}


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size
