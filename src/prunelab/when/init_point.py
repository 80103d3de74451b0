"""One point of pruning at initialisation (issue 38): the seed's freshly initialised network
cut by a method's mask at a ratio, then trained as the baseline is, and measured as a sweep
point is — with the sanity checks of Frankle et al. 2021 ("Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?", §5) as variants of the same point.

- The network is the seed's own θ₀: `initialised(model, seed)` draws exactly what the train
  stage starts its baseline from (`seed_everything(seed)`, `build_model`), so a point and
  the seed's dense baseline differ only by the mask, and train for the same epochs
  (`train.epochs`; the study's after-training points see train.epochs + finetune.epochs).
- The methods (`AT_INIT`) rank raw scores globally, as their papers do (`at_init`): SNIP
  and GraSP on the calibration batches of the seed, SynFlow data-free in its rounds;
  magnitude (|θ₀|) and random are the controls. A layer a global ranking empties stays empty
  (layer collapse is an outcome of the method, Tanaka et al. 2020, §3): the point is trained
  and measured all the same, its `layer_sparsity` saying so.
- Variants (`VARIANTS`): `mask`, the method's own; `shuffled`, each layer's mask permuted at
  random (the same per-layer density on θ₀'s other weights); `reinitialised`, the same mask
  on weights drawn afresh (a seed derived from the point's, never θ₀'s own draw). A method
  whose choice within layers matters beats both; Frankle et al. found SNIP, GraSP and
  SynFlow do not — only the per-layer fractions mattered.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prunelab.criteria.scoring import Batches, Scores, weights_of
from prunelab.data import Split
from prunelab.metrics import accuracies, pruning_metrics, which_right
from prunelab.models import Net, build_model
from prunelab.prune.masks import Masks, apply_masks, matched_random_masks, prunable_names
from prunelab.prune.procedure import calibration_batches
from prunelab.ratios import ratio_sparsity
from prunelab.training import FitSettings, fit
from prunelab.when.at_init import global_keep, grasp_scores, snip_scores, synflow_masks
from prunelab.when.lottery import reinitialised

VARIANTS = ("mask", "shuffled", "reinitialised")


@dataclass(frozen=True)
class InitSettings:
    """What a point at initialisation runs beside the baseline's training recipe: the
    calibration data of the data-reading methods (SNIP, GraSP), SynFlow's rounds (100 in
    Tanaka et al. 2020, Algorithm 1) and whether the output layer is pruned."""

    calibration_batches: int
    calibration_batch_size: int
    synflow_rounds: int = 100
    prune_output_layer: bool = False


# (θ₀, calibration batches, the scored weights' names, density kept, seed, settings) -> masks
MaskRule = Callable[[Net, Batches, Sequence[str], float, int, InitSettings], Masks]


def _magnitude(model: Net, names: Sequence[str]) -> Scores:
    return {k: w.detach().abs() for k, w in weights_of(model).items() if k in names}


def _random(model: Net, names: Sequence[str], seed: int) -> Scores:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(w.shape, generator=g) for k, w in weights_of(model).items()
            if k in names}


AT_INIT: dict[str, tuple[str, MaskRule]] = {
    # name: (what it is, as its paper defines it; the rule that gives its masks)
    "snip": ("SNIP, Lee et al. 2019, Eq. 6: |w·∂L/∂w| at θ₀",
             lambda m, b, n, d, s, _: global_keep(snip_scores(m, b, n), d)),
    "grasp": ("GraSP, Wang et al. 2020, Eq. 8: θ ⊙ Hg kept highest",
              lambda m, b, n, d, s, _: global_keep(grasp_scores(m, b, n), d)),
    "synflow": ("SynFlow, Tanaka et al. 2020, Algorithm 1: data-free, in rounds",
                lambda m, b, n, d, s, c: synflow_masks(m, d, n, c.synflow_rounds)),
    "magnitude": ("|θ₀|, global: the control that reads only the draw",
                  lambda m, b, n, d, s, _: global_keep(_magnitude(m, n), d)),
    "random": ("uniform scores, global: the control that reads nothing",
               lambda m, b, n, d, s, _: global_keep(_random(m, n, s), d)),
}


def initialised(model: str, seed: int) -> Net:
    """The network the train stage starts seed `seed`'s baseline from, the caller's random
    state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model)


def derived_seed(variant: str, seed: int) -> int:
    """The seed of a point's sanity variant: derived from the point's, never the point's
    own (the re-initialisation would draw θ₀ again; the shuffle would redraw random's own
    scores and keep its very mask)."""
    return int(hashlib.sha1(f"{variant}-{seed}".encode()).hexdigest()[:7], 16)


def init_masks(method: str, theta0: Net, train: Split, density: float, seed: int,
               s: InitSettings) -> Masks:
    """`method`'s masks (`AT_INIT`) keeping `density` of the prunable weights of θ₀."""
    if method not in AT_INIT:
        raise ValueError(f"unknown method at initialisation {method!r}; one of "
                         f"{sorted(AT_INIT)}")
    names = prunable_names(theta0, s.prune_output_layer)
    batches = calibration_batches(train, s.calibration_batches, s.calibration_batch_size, seed)
    return AT_INIT[method][1](copy.deepcopy(theta0), batches, names, density, seed, s)


def variant_model(theta0: Net, masks: Masks, variant: str, seed: int) -> Net:
    """The network a variant trains: θ₀ under the method's masks, under each layer's masks
    shuffled, or the masks on fresh weights (`VARIANTS`)."""
    if variant == "mask":
        return apply_masks(copy.deepcopy(theta0), masks)
    if variant == "shuffled":
        return apply_masks(copy.deepcopy(theta0),
                           matched_random_masks(masks, derived_seed(variant, seed)))
    if variant == "reinitialised":
        return reinitialised(theta0, masks, derived_seed(variant, seed))
    raise ValueError(f"unknown variant {variant!r}; one of {list(VARIANTS)}")


def init_point(model: str, splits: dict[str, Split], method: str, variant: str, ratio: float,
               seed: int, training: FitSettings, s: InitSettings,
               baseline_test_accuracy: float) -> dict[str, Any]:
    """Prune seed `seed`'s θ₀ to `ratio` (cut 1 − 1/r of the prunable weights) with
    `method`'s mask in `variant`, train it with `training` seeded `seed` (the baseline's
    data order), and measure it on `splits` ("train", "val", "test") as a sweep point is,
    with the epochs it trained."""
    theta0 = initialised(model, seed)
    sparsity = ratio_sparsity(ratio)
    masks = init_masks(method, theta0, splits["train"], 1 - sparsity, seed, s)
    net = variant_model(theta0, masks, variant, seed)
    fit(net, splits["train"], splits["val"], training, seed, desc=f"{method} at init")
    measured = {k: v for k, v in splits.items() if k != "train"}
    bs = training.eval_batch_size
    point: dict[str, Any] = {
        "method": method, "variant": variant, "procedure": "init", "granularity": "weight",
        "ratio": ratio, "seed": seed, "rounds": 1, "target_sparsity": sparsity,
        "epochs": training.epochs, "threshold": None,
        **pruning_metrics(net, theta0.spec, prunable_names(theta0, s.prune_output_layer)),
        **accuracies(net, measured, bs), "baseline_test_accuracy": baseline_test_accuracy,
        "test_images": len(splits["test"]), "val_images": len(splits["val"]),
        **which_right(net, splits, bs)}
    point["test_accuracy_drop"] = baseline_test_accuracy - point["test_accuracy"]
    return point
