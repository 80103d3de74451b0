"""The three MNIST models, described by a small spec, and safe save/load.

Every model takes raw pixels in [0, 1] with shape (N, 1, 28, 28) and returns logits;
input normalisation lives inside the model. A model is rebuilt from its spec (name and
layer widths), which is what neuron pruning changes: a neuron-pruned MLP is just an MLP
with narrower widths. Files are safetensors with the spec in the header metadata, so
loading never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.plumbing.fileio import write_bytes

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {
    "mlp": (128,),  # 784-128-10
    "lenet300": (300, 100),  # LeNet-300-100
    "lenet5": (20, 50, 500),  # Caffe LeNet-5: conv 20@5x5, conv 50@5x5, fc 500
}
_SPEC_KEY = "prunelab.spec"


class ModelFileError(PrunelabError, ValueError):
    """A model path that is missing or not a safe prunelab model file."""


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a model: its family and the width of each hidden layer."""

    name: str
    widths: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "widths": list(self.widths)})

    @staticmethod
    def from_json(text: str) -> ModelSpec:
        raw = json.loads(text)
        return ModelSpec(str(raw["name"]), tuple(int(w) for w in raw["widths"]))


class Normalize(nn.Module):
    """Standardise raw [0, 1] pixels with MNIST's mean and std (constants, not weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One new tensor instead of two: at batch 256 this is a tenth of a small model's time.
        return torch.sub(x, MNIST_MEAN).mul_(1.0 / MNIST_STD)


class Net(nn.Module):
    """A plain Sequential body: the layer order is the model's structure, which the
    criteria, masks and neuron surgery read (see `weighted_layers`, `unit_groups`)."""

    def __init__(self, spec: ModelSpec, body: list[nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def build_model(spec: ModelSpec | str) -> Net:
    """A freshly initialised model; `spec` may be a model name for the default widths."""
    if isinstance(spec, str):
        if spec not in DEFAULT_WIDTHS:
            raise ValueError(f"unknown model {spec!r}; choose one of {sorted(DEFAULT_WIDTHS)}")
        spec = ModelSpec(spec, DEFAULT_WIDTHS[spec])
    if any(w < 1 for w in spec.widths):
        raise ValueError(f"every layer needs at least one unit, got widths {spec.widths}")
    if spec.name == "lenet5":
        c1, c2, fc = spec.widths
        # A ReLU after each conv (the Caffe original has none) gives every channel a
        # non-negative activation, which the activation criteria and APoZ are defined on.
        body: list[nn.Module] = [
            Normalize(), nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * 4 * 4, fc), nn.ReLU(), nn.Linear(fc, 10),
        ]  # fmt: skip
    elif spec.name in ("mlp", "lenet300"):
        body, width = [Normalize(), nn.Flatten()], 28 * 28
        for w in spec.widths:
            body += [nn.Linear(width, w), nn.ReLU()]
            width = w
        body.append(nn.Linear(width, 10))
    else:
        raise ValueError(f"unknown model {spec.name!r}; choose one of {sorted(DEFAULT_WIDTHS)}")
    return Net(spec, body)


def weighted_layers(model: Net) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """(parameter-name prefix, module) of every Linear/Conv2d, input to output."""
    return [
        (f"body.{i}", m)
        for i, m in enumerate(model.body)
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]


@dataclass(frozen=True)
class UnitGroup:
    """One hidden layer's units (neurons or channels) and the layers they connect.

    `producer` computes the units (their rows/filters), `activation` is the index in
    `model.body` of the ReLU whose output is the units' activation, and `consumer` reads
    them: each unit owns `span` consecutive input columns of the consumer (16 where a
    4x4 feature map is flattened into a Linear, else 1).
    """

    producer: str
    activation: int
    consumer: str
    span: int


def unit_groups(model: Net) -> list[UnitGroup]:
    """The prunable hidden layers of `model`, input to output (the logits are never cut)."""
    layers = weighted_layers(model)
    groups = []
    for (prefix, producer), (next_prefix, consumer) in zip(layers, layers[1:], strict=False):
        start = int(prefix.split(".")[1])
        relu = next(i for i in range(start + 1, len(model.body))
                    if isinstance(model.body[i], nn.ReLU))
        units = producer.weight.shape[0]
        fan_in = consumer.weight.shape[1]
        groups.append(UnitGroup(prefix, relu, next_prefix, fan_in // units))
    return groups


def baked(model: Net) -> Net:
    """A fresh copy with any torch.nn.utils.prune mask folded into plain weights.

    (copy.deepcopy cannot copy a pruned module: its `weight` is a computed tensor.)
    """
    state = model.state_dict()
    plain = {}
    for key, value in state.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            key = key[: -len("_orig")]
            value = value * state[f"{key}_mask"]
        plain[key] = value.detach().clone()
    out = build_model(model.spec).to(next(model.parameters()).device)
    out.load_state_dict(plain, strict=True)
    return out.train(model.training)


def save_model(model: Net, path: str | Path) -> None:
    """Write weights and spec to a safetensors file, atomically; masks are baked in."""
    state = {k: v.detach().cpu().contiguous() for k, v in baked(model).state_dict().items()}
    # The same bytes as save_file's, written as open() writes: save_file (safetensors 0.8)
    # creates its file 0600 whatever the umask, so no one else could read the models.
    write_bytes(path, save(state, metadata={_SPEC_KEY: model.spec.to_json()}))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> Net:
    """Rebuild a saved model from its file. Safe: reads safetensors only, never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; run `dvc repro` to create it")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path} is not a prunelab model file (safetensors): {exc}. prunelab never "
            "unpickles model files; re-create it with the pipeline (dvc repro)."
        ) from None
    if _SPEC_KEY not in meta:
        raise ModelFileError(f"{path} has no '{_SPEC_KEY}' metadata; it was not saved by prunelab")
    model = build_model(ModelSpec.from_json(meta[_SPEC_KEY]))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def count_parameters(model: nn.Module) -> int:
    # Under torch.nn.utils.prune, weight_orig is the parameter and the mask a buffer, so
    # this counts the same for a masked model as for its baked copy.
    return sum(p.numel() for p in model.parameters())


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no CUDA device is present; use auto")
    return torch.device(name)
