"""DVC experiments on the real pipeline (a slice): `dvc exp show` and `dvc metrics diff` see
our metrics, and a `--temp` experiment's MLflow runs land in the project's own store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import copy_project, run, small_params

GIT_ID = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
          for what, value in (("NAME", "prunelab tests"), ("EMAIL", "tests@localhost"))}


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """One method on a slice, reproduced and committed (metrics included) as a user would."""
    params = small_params(mirror, **{"prune.methods": ["magnitude"],
                                     "prune.granularities": ["weight"],
                                     "prune.calibration_batches": 2, "finetune.epochs": 2,
                                     "search.trials": 2, "search.refine": 0,
                                     "sweep.ratios": [4], "sweep.seeds": [0, 1],
                                     "oracle.weights_per_layer": 50})
    proj = copy_project(tmp_path_factory.mktemp("exp"), params)
    run(["dvc", "repro"], proj)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "baseline"], proj, **GIT_ID)
    assert run(["git", "status", "--porcelain"], proj).stdout == ""  # every output accounted
    return proj


@pytest.mark.slow
def test_an_experiment_shows_its_headline_metrics_and_diffs_against_head(committed: Path) -> None:
    run(["dvc", "exp", "run", "-n", "ft1", "-S", "finetune.epochs=1"], committed, **GIT_ID)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], committed).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    (ft1,) = [e for e in exps if e.get("name") == "ft1"]
    data = ft1["revs"][0]["data"]
    shown_metrics = data["metrics"]["reports/metrics/magnitude-weight.json"]["data"]
    assert 0.5 < shown_metrics["acc"] <= 1
    assert data["params"]["params.yaml"]["data"]["finetune"]["epochs"] == 1
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "ft1", "--all", "--json"],
                          committed).stdout)
    moved = diff["reports/metrics/magnitude-weight.json"]
    assert moved["acc"]["old"] is not None and moved["acc"]["new"] is not None
    table = run(["dvc", "metrics", "diff", "HEAD", "ft1"], committed).stdout.splitlines()
    assert max(map(len, table)) <= 100, "\n".join(table)


@pytest.mark.slow
def test_a_temp_experiment_logs_to_the_project_s_mlflow_store(committed: Path) -> None:
    from mlflow.tracking import MlflowClient

    run(["dvc", "exp", "run", "--temp", "-n", "tmp1", "-S", "finetune.lr=0.02"], committed,
        **GIT_ID)
    client = MlflowClient(f"sqlite:///{committed / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp")
    runs = client.search_runs([exp.experiment_id], "tags.`dvc.exp_name` = 'tmp1'")
    assert {r.data.tags["dvc.stage"] for r in runs} >= {"prune"}
    assert all(r.data.tags["git.commit"] for r in runs)
    (ft,) = [r for r in runs if r.data.tags["stage"] == "prune"]
    assert float(ft.data.params["finetune.lr"]) == 0.02


def test_a_plan_pre_registers_only_what_its_commit_fixed(tmp_path: Path) -> None:
    """`report.plan`: named with its commit when committed and unchanged; refused, with the
    fix, when missing, uncommitted or edited since."""
    from prunelab.errors import PrunelabError
    from prunelab.stages.report import preregistration

    assert preregistration(None, tmp_path) is None
    run(["git", "init", "-q"], tmp_path)
    plan = tmp_path / "plan.md"
    for state in ("missing", "uncommitted", "committed", "edited"):
        if state == "uncommitted":
            plan.write_text("# contrasts\n")
        if state == "committed":
            run(["git", "add", "plan.md"], tmp_path)
            run(["git", "commit", "-qm", "plan"], tmp_path, **GIT_ID)
            head = run(["git", "log", "-1", "--format=%h of %cs"], tmp_path).stdout.strip()
            assert preregistration("plan.md", tmp_path) == (
                f"`plan.md` (commit {head}), committed before this run's data existed")
            continue
        if state == "edited":
            plan.write_text("# contrasts, changed after the data\n")
        with pytest.raises(PrunelabError, match="commit it before the run, or set "
                                                "report.plan: null"):
            preregistration("plan.md", tmp_path)


@pytest.mark.slow
def test_a_confirmatory_run_names_its_plan_and_measures_no_oracle(committed: Path) -> None:
    """A committed plan and `dvc exp run --temp` with oracle.enabled false, as the
    confirmatory run is made: its report calls the answer pre-registered in the plan (at
    the plan's commit) and leaves the oracle's sections out; the oracle wrote empty tables."""
    (committed / "plan.md").write_text("# random against magnitude, fixed before the data\n")
    run(["git", "add", "plan.md"], committed)
    run(["git", "commit", "-qm", "plan"], committed, **GIT_ID)
    commit = run(["git", "log", "-1", "--format=%h"], committed).stdout.strip()
    question = ("[{name: q, ask: Does random beat magnitude?, criteria: [random], "
                "references: [magnitude], alpha: null, equivalence_margin_pp: null}]")
    run(["dvc", "exp", "run", "--temp", "-n", "conf", "-S", "oracle.enabled=false",
         "-S", "report.plan=plan.md", "-S", "prune.methods=[magnitude,random]",
         "-S", f"report.questions={question}"], committed, **GIT_ID)
    ref = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
              committed).stdout.split()
    (conf,) = [r for r in ref if r.endswith("/conf")]
    report = run(["git", "show", f"{conf}:reports/report.md"], committed).stdout
    assert f"pre-registered in `plan.md` (commit {commit} of" in report
    # (The module's earlier experiments may leave their params in the workspace: epochs vary.)
    assert re.search(r"\*\*In one sentence\*\*: On `mlp`, after \d+ epoch\(s\) of "
                     r"fine-tuning, over 2 seeds \(pre-registered\)", report), report[:3000]
    assert "`random` is " in report.split("**In one sentence**")[1].split("\n")[0]
    assert "Not measured in this run (`oracle.enabled: false`)" in report
    assert "## Criterion quality by whole sets" not in report
    assert json.loads(run(["git", "show", f"{conf}:oracle/oracle.json"], committed).stdout) == {}


@pytest.mark.slow
def test_more_seeds_compute_only_the_new_seeds_points(committed: Path) -> None:
    """The sweep's points are keyed by seed (and its baseline's content), not its study:
    a third seed computes that seed's two points (magnitude's and its dense+ft control);
    the four earlier ones come from the study. (Runs last: the workspace keeps the
    earlier experiments' params.)"""
    out = run(["dvc", "exp", "run", "-n", "seeds3", "-S", "sweep.seeds=[0,1,2]"], committed,
              **GIT_ID).stdout
    assert re.search(r"sweep study \S+: 6 points, 2 to compute", out), out[-2000:]
    points = json.loads((committed / "sweep" / "magnitude-weight.json").read_text())["points"]
    assert sorted(p["seed"] for p in points) == [0, 1, 2]
