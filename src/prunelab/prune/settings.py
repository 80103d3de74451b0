"""From the validated `Config` to `PruneSettings` (`prune.spec`): how each criterion prunes.

Apart from `settings` so that what only trains (the train stage) does not import the
pruning code, and so is not rerun when a criterion changes.
"""

from __future__ import annotations

from dataclasses import replace

from prunelab.config import Config
from prunelab.methods import key, settings_of
from prunelab.prune.granularity import GRANULARITIES
from prunelab.prune.spec import PruneSettings
from prunelab.records import SearchChoice


def prune_settings(cfg: Config, method: str, granularity: str,
                   choice: SearchChoice | None = None) -> PruneSettings:
    """The searched sparsity if given; else a method's absolute threshold from params.yaml,
    else its target sparsity there."""
    p = cfg.prune
    threshold = None if choice else p.thresholds.get(key(method, granularity))
    sparsity = {"weight": p.weight_sparsity, "neuron": p.neuron_sparsity}[granularity]
    if choice:
        sparsity = choice.sparsity
    return GRANULARITIES[granularity].settled(PruneSettings(
        method=method, granularity=granularity,
        sparsity=None if threshold is not None else sparsity, threshold=threshold,
        scope=p.scope, normalize=p.normalize, prune_output_layer=p.prune_output_layer,
        criterion=settings_of(cfg, method), round_to=p.round_to,
        rounds=cfg.finetune.rounds, gradual_interval=p.gradual_interval,
        gradual_end=p.gradual_end, calibration_batches=p.calibration_batches,
        calibration_batch_size=p.calibration_batch_size, seed=p.seed,
    ))


def sweep_prune_settings(cfg: Config, method: str, granularity: str) -> PruneSettings:
    """A sweep point's settings before its ratio and seed (`sweep.point_settings`): as
    `prune` says, but units are cut with `sweep.neuron_scope`."""
    s = prune_settings(cfg, method, granularity)
    if granularity == "neuron":
        s = GRANULARITIES[granularity].settled(replace(s, scope=cfg.sweep.neuron_scope))
    return s
