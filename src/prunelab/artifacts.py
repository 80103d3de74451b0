"""The files of one pruned model's folder (`models/<method>-<granularity>/`).

`pruned.safetensors` (masks baked in, or the smaller dense model), `mask.safetensors`
(weight masks, or `units.<i>` keep-vectors), `spec.json`, and after fine-tuning
`finetuned.safetensors`. Written atomically; read back with masks held on the model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prunelab.fileio import atomic_path, write_bytes
from prunelab.masks import apply_masks
from prunelab.models import Net, load_model, save_model
from prunelab.pruning import Pruned

PRUNED, MASK, SPEC, FINETUNED = ("pruned.safetensors", "mask.safetensors", "spec.json",
                                 "finetuned.safetensors")


def save_pruned(pruned: Pruned, folder: Path) -> None:
    save_model(pruned.model, folder / PRUNED)
    with atomic_path(folder / MASK) as tmp:
        save_file(pruned.mask_tensors(), str(tmp))
    write_bytes(folder / SPEC, (pruned.model.spec.to_json() + "\n").encode())


def load_pruned(folder: Path, granularity: str, device: torch.device) -> Net:
    """The pruned model, with its weight masks held again (weight granularity) so that
    fine-tuning keeps cut weights at zero."""
    model = load_model(folder / PRUNED, device)
    if granularity == "weight":
        apply_masks(model, {k: v.bool() for k, v in load_file(str(folder / MASK)).items()})
    return model
