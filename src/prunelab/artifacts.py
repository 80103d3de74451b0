"""The model files stages hand each other: the per-seed baselines (`models/seeds/`) and
one pruned model's folder (`models/pruned/<method>-<granularity>/`).

`pruned.safetensors` (masks baked in, or the smaller dense model), `mask.safetensors`
(weight masks, or `units.<i>` keep-vectors), `spec.json`, and after fine-tuning
`finetuned.safetensors`. Written atomically; read back with masks held on the model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from prunelab.errors import PrunelabError
from prunelab.models import Net, load_model, save_model
from prunelab.plumbing.fileio import write_bytes
from prunelab.prune.granularity import GRANULARITIES, Pruned

PRUNED, MASK, SPEC, FINETUNED = ("pruned.safetensors", "mask.safetensors", "spec.json",
                                 "finetuned.safetensors")


def save_pruned(pruned: Pruned, folder: Path) -> None:
    save_model(pruned.model, folder / PRUNED)
    write_bytes(folder / MASK, save(pruned.mask_tensors()))  # as save_model, for its mode
    write_bytes(folder / SPEC, (pruned.model.spec.to_json() + "\n").encode())


def load_pruned(folder: Path, granularity: str, device: torch.device) -> Net:
    """The pruned model with its cut held again (weight masks), so that fine-tuning keeps
    cut weights at zero."""
    return GRANULARITIES[granularity].hold(load_model(folder / PRUNED, device),
                                           load_file(str(folder / MASK)))


def baseline_files(folder: Path, seeds: list[int]) -> dict[int, tuple[Path, Path]]:
    """The per-seed baselines (`train` writes <s>.safetensors and <s>.json per seed)."""
    files = {s: (folder / f"{s}.safetensors", folder / f"{s}.json") for s in seeds}
    missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise PrunelabError(f"missing per-seed baseline file(s) {missing}; run "
                            "`dvc repro train` (one baseline per seed in sweep.seeds)")
    return files
