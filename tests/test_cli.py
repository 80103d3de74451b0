"""The command explains itself: help on every stage and option, `--params` on either side of
the stage, and path defaults that are the paths dvc.yaml passes."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
import yaml

from prunelab.cli import _baseline, build_parser, main
from prunelab.config import load_config

from helpers import ROOT


def _stages(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_stage_and_option_says_what_it_is_with_an_example() -> None:
    stages = _stages(build_parser())
    assert set(stages) >= {"download", "train", "search", "prune", "sweep", "oracle",
                           "report"}
    for name, stage in stages.items():
        assert stage.description and stage.epilog and f"prunelab {name}" in stage.epilog
        for action in stage._actions:
            assert action.help, f"prunelab {name} {action.option_strings}: no help text"


def test_the_defaults_are_the_paths_dvc_yaml_passes() -> None:
    """Parsed from dvc.yaml's command, or from the bare stage name: the same arguments."""
    cfg = load_config(ROOT / "params.yaml")
    parser = build_parser()
    commands = {name: stage["cmd"] for name, stage in
                yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}
    assert {"train", "search", "prune", "sweep", "oracle", "report"} <= set(commands)
    for name, cmd in commands.items():
        words = shlex.split(cmd.replace("${seed}", str(cfg.seed)))
        assert words[:2] == ["prunelab", name]
        given, bare = vars(parser.parse_args(words[1:])), vars(parser.parse_args([name]))
        if "baseline" in given:  # depends on params.yaml's seed: filled in when it runs
            bare["baseline"] = _baseline(argparse.Namespace(**bare), cfg)
        if name in ("sweep", "when"):  # --out-dir <stage>, unless --worker (`main` fills it)
            bare["out_dir"] = Path(name)
        assert {k: v for k, v in given.items() if k != "choices"} == \
            {k: v for k, v in bare.items() if k != "choices"}, name


@pytest.mark.parametrize("where", ["before", "after"])
def test_params_is_read_before_or_after_the_stage(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["lr"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    argv = (["--params", str(bad), "download"] if where == "before"
            else ["download", "--params", str(bad)])
    assert main(argv) == 2  # checked before any work: nothing downloaded
    assert "train.lr" in capsys.readouterr().err


def test_a_stage_refuses_to_run_other_code_than_the_project_s_src(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The prunelab this process imports must be the project's own src/ (an editable
    install otherwise runs its own tree in a `--temp` experiment's copy): a copy that is
    the same passes, an edited copy is refused before any work, one line with the fix."""
    import shutil

    from prunelab.cli import foreign_code

    shutil.copytree(ROOT / "src" / "prunelab", tmp_path / "src" / "prunelab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    assert foreign_code(tmp_path) is None
    assert foreign_code(tmp_path / "elsewhere") is None  # no src/ there: nothing to match
    edited = tmp_path / "src" / "prunelab" / "training.py"
    edited.write_text(edited.read_text() + "\n# edited in the copy\n")
    assert main(["criteria", "--params", str(tmp_path / "params.yaml"),
                 "--out", str(tmp_path / "criteria.json")]) == 2
    err = capsys.readouterr().err
    assert "differs from this project's" in err and "PYTHONPATH=src" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "criteria.json").exists()
