"""params.yaml validation: every mistake stops before work with the key and the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from prunelab.config import ConfigError, load_config, parse_config
from prunelab.methods import check

ROOT = Path(__file__).resolve().parents[1]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


DELETE = object()

# (key, bad value, words the message must contain)
BAD = [
    ("model", "resnet", ["model", "'mlp'", "'lenet300'", "'lenet5'"]),
    ("prune.methods", ["magnitude", "snip"], ["prune.methods", "'snip'", "registered",
                                              "gradient", "random"]),
    ("prune.methods", ["magnitude", "taylor", "magnitude"], ["prune.methods", "'magnitude'",
                                                             "twice"]),
    ("criteria", {"magnitude": {"norm": "l1"}}, ["criteria.magnitude.norm", "unknown setting",
                                                 "neuron_norm"]),
    ("criteria", {"magnitude": {"neuron_norm": "l3"}}, ["criteria.magnitude.neuron_norm",
                                                        "'l1'", "'l3'"]),
    ("criteria", {"magnitud": None}, ["criteria.magnitud", "not a registered criterion"]),
    ("extra_criteria", ["no_such_package_here"], ["no_such_package_here", "extra_criteria"]),
    ("prune.methods", ["gradient", "taylor", "fisher", "woodfisher", "obs", "magnitude",
                       "activation"],
     ["report.questions gradient", "'movement'", "prune.methods"]),
    ("prune.methods", [], ["prune.methods", "at least 1"]),
    ("prune.weight_sparsity", 1.0, ["prune.weight_sparsity", "less than 1"]),
    ("prune.neuron_sparsity", -0.1, ["prune.neuron_sparsity", "greater than or equal to 0"]),
    ("train.lr", -0.01, ["train.lr", "greater than 0"]),
    ("train.lr", "fast", ["train.lr", "valid number"]),
    ("train.lr", float("inf"), ["train.lr", "finite number"]),
    ("train.epochs", 2.5, ["train.epochs", "valid integer"]),
    ("train.epochs", True, ["train.epochs", "valid integer"]),
    ("train.learning_rate", 0.1, ["train.learning_rate", "unknown key"]),
    ("device", "tpu", ["device", "'auto'", "'cpu'", "'cuda'"]),
    ("data.sources", DELETE, ["data.sources", "missing"]),
    ("prune.thresholds", {"magnitude-layer": 0.1}, ["thresholds", "magnitude-weight"]),
    ("prune.scope", "local", ["prune.scope", "'global'", "'layer'"]),
    ("compute.workers", 0, ["compute.workers", "'auto'", "greater than or equal to 1"]),
    ("compute.workers", "all", ["compute.workers", "'auto'"]),
    ("compute.threads", 0, ["compute.threads", "greater than or equal to 1"]),
    ("seed", 7, ["seed 7", "sweep.seeds", "add it"]),
    # Rounds share finetune.epochs (3) evenly: same budget one-shot and in rounds.
    ("finetune.rounds", 2, ["finetune.epochs (3)", "2 rounds", "finetune.rounds"]),
    ("sweep.iterative_rounds", [3, 2], ["finetune.epochs (3)", "2 rounds"]),
    ("sweep.iterative_rounds", [1], ["sweep.iterative_rounds.0", "greater than or equal to 2"]),
    ("sweep.iterative_rounds", [3, 3], ["sweep.iterative_rounds", "twice"]),
    ("report.area_up_to", {"neuron": 1.5}, ["report.area_up_to.neuron (1.5)", "below every",
                                            "null"]),
    ("report.plan", 3, ["report.plan", "valid string"]),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_names_key_and_allowed_values(key: str, value: Any, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        check(parse_config(with_change(key, value)))  # what every stage runs first
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    if key in ("criteria", "extra_criteria") or (key == "prune.methods" and value):
        assert "\n" not in str(err.value), str(err.value)


def test_shipped_params_are_valid() -> None:
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.model == "mlp" and cfg.data.sources[0] == "../shared/data/mnist"


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    text = (ROOT / "params.yaml").read_text().replace("lr: 0.01", "lr: 1e-2")
    (tmp_path / "params.yaml").write_text(text)
    assert load_config(tmp_path / "params.yaml").train.lr == 0.01


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text("- a list")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "p.yaml")


def test_iterative_rounds_may_not_repeat_the_main_series_rounds() -> None:
    raw = with_change("sweep.iterative_rounds", [3])
    raw["finetune"]["rounds"] = 3
    with pytest.raises(ConfigError, match=r"lists finetune.rounds \(3\)"):
        parse_config(raw)


def test_a_question_may_take_a_control_as_its_reference_only_where_it_is_swept() -> None:
    """`scratch` and `dense+ft` are swept beside the methods with sweep.controls: a question
    may compare against them then, and is refused, with the fix, when they are not swept;
    any other name outside prune.methods is refused as before."""
    assert any(q.references == ["scratch"] for q in load_config(ROOT / "params.yaml")
               .report.questions)  # the shipped one
    raw = with_change("sweep.controls", False)
    with pytest.raises(ConfigError, match=r"questions scratch: the control 'scratch' is swept "
                                          r"only with sweep.controls true"):
        check(parse_config(raw))
    raw = copy.deepcopy(BASE)
    raw["report"]["questions"][1]["references"] = ["scrach"]
    with pytest.raises(ConfigError, match=r"'scrach' is neither among prune.methods nor a "
                                          r"control"):
        check(parse_config(raw))


def test_the_control_names_checked_for_questions_are_the_swept_ones() -> None:
    from prunelab import methods, records

    assert methods.CONTROLS == records.CONTROLS
