"""Neuron/channel removal for real: a smaller dense model, not a masked big one."""

from __future__ import annotations

import torch
from torch import Tensor

from prunelab.models import ModelSpec, Net, baked, build_model, unit_groups


@torch.no_grad()
def remove_units(model: Net, keep: list[Tensor]) -> Net:
    """A model of the same family whose hidden widths are the kept counts, with the kept
    units' incoming weights and biases and the consumer columns that read them copied over.

    Its outputs equal those of `model` with the cut units masked (`masks.unit_masks`).
    """
    src = baked(model)
    groups = unit_groups(src)
    if len(keep) != len(groups):
        raise ValueError(f"need one keep-vector per hidden layer ({len(groups)}), got {len(keep)}")
    widths = tuple(int(k.sum()) for k in keep)
    small = build_model(ModelSpec(src.spec.name, widths)).to(next(src.parameters()).device)
    state = {k: v.clone() for k, v in src.state_dict().items()}
    for g, k in zip(groups, keep, strict=True):
        k = k.to(state[f"{g.producer}.weight"].device)
        state[f"{g.producer}.weight"] = state[f"{g.producer}.weight"][k]
        state[f"{g.producer}.bias"] = state[f"{g.producer}.bias"][k]
        cols = k.repeat_interleave(g.span)
        state[f"{g.consumer}.weight"] = state[f"{g.consumer}.weight"][:, cols]
    small.load_state_dict(state, strict=True)
    return small.train(model.training)
