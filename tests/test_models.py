"""The three models, and saving/loading them safely."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from prunelab import ModelSpec, build_model, load_model, save_model
from prunelab.models import count_parameters


@pytest.mark.parametrize(
    ("name", "params"),
    # 784*128+128 + 128*10+10;  784*300+300 + 300*100+100 + 100*10+10;
    # 20*25+20 + 50*20*25+50 + 800*500+500 + 500*10+10
    [("mlp", 101_770), ("lenet300", 266_610), ("lenet5", 431_080)],
)
def test_models_take_raw_pixels_and_return_logits(name: str, params: int) -> None:
    model = build_model(name)
    assert count_parameters(model) == params
    out = model(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities


@pytest.mark.parametrize("spec", [ModelSpec("mlp", (128,)), ModelSpec("lenet5", (7, 11, 30))])
def test_save_load_round_trip(tmp_path: Path, spec: ModelSpec) -> None:
    torch.manual_seed(0)
    model = build_model(spec).eval()
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.spec == spec
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))


class _Exploit:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ValueError, match="never unpickles"):
        load_model(evil)
    assert not marker.exists()
    # Also as torch.save would write it (a zip with a pickle inside).
    torch.save({"x": _Exploit(marker)}, evil)
    with pytest.raises(ValueError, match="not a prunelab model file"):
        load_model(evil)
    assert not marker.exists()
