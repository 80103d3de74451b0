"""prunelab: compare neural-network pruning criteria, reproducibly.

`prunelab.load_model(path)` rebuilds any model the pipeline saved (safetensors only).
"""

from prunelab.models import ModelSpec, build_model, load_model, save_model

__all__ = ["ModelSpec", "build_model", "load_model", "save_model"]
