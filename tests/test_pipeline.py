"""The real `dvc repro`, end to end on a slice of MNIST, in a temporary copy of the project.

One repro (module fixture) serves several tests: each inspects a different promise.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from prunelab import load_model
from prunelab.analysis.verdicts import LABELS
from prunelab.data import load_test
from prunelab.records import CONTROLS
from prunelab.training import evaluate

from helpers import copy_project, run, small_params

METHODS = ["magnitude", "gmp", "random"]
DURING_FINETUNING = {"gmp"}  # cut while fine-tuning: no model before it
ITERATIVE = [m for m in METHODS if m not in DURING_FINETUNING]  # also swept in 2 rounds
GRANULARITIES = ["weight", "neuron"]
RATIOS, SEEDS = [2, 8], [0, 1]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    params = small_params(mirror, **{"prune.methods": METHODS,
                                     "prune.granularities": GRANULARITIES,
                                     "prune.calibration_batches": 4, "finetune.epochs": 2,
                                     "search.trials": 3, "sweep.iterative_rounds": [2],
                                     "sweep.ratios": RATIOS, "sweep.seeds": SEEDS})
    proj = copy_project(tmp_path_factory.mktemp("proj"), params)
    (proj / "repro.log").write_text(run(["dvc", "repro"], proj).stdout)
    return proj


def metrics(proj: Path, name: str) -> dict:
    return json.loads((proj / "metrics" / name).read_text())


@pytest.mark.slow
def test_baseline_metrics_match_the_saved_model(project: Path) -> None:
    m = metrics(project, "baseline.json")
    assert m["test_accuracy"] > 0.85 and m["parameters"] == 101_770
    # The audit path: prunelab.load_model on the file reproduces the metric exactly.
    model = load_model(project / "models/seeds/0.safetensors")
    assert evaluate(model, load_test(project / "data", limit=1000)).accuracy == m["test_accuracy"]


@pytest.mark.slow
def test_second_repro_changes_nothing_and_metrics_show(project: Path) -> None:
    before = (project / "criteria.json").stat().st_mtime_ns
    again = run(["dvc", "repro"], project)
    # Only the criteria manifest runs (always: an outside criterion's code is not in the
    # repo); its file is left as it was, so nothing after it runs.
    assert re.findall(r"Running stage '([^']+)'", again.stdout) == ["criteria"], again.stdout
    assert (project / "criteria.json").stat().st_mtime_ns == before
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    files = shown[""]["data"]
    assert files["reports/metrics/dense.json"]["data"]["acc"] == (
        metrics(project, "baseline.json")["test_accuracy"])
    # One small file per method-granularity and per primary contrast: what `dvc exp show`
    # lists (the search, prune and finetune records, the headline and the full summary are
    # plain outputs, tracked by Git).
    series = {f"{m}-{g}" for m in METHODS for g in GRANULARITIES}
    assert {f for f in files if f.startswith("reports/metrics/")} == {
        f"reports/metrics/{s}.json" for s in series | {"dense"}}
    for s in series:
        assert files[f"reports/metrics/{s}.json"]["data"] == {
            "ratio": round(metrics(project, f"finetune/{s}.json")["compression_ratio"], 2),
            "acc": metrics(project, f"finetune/{s}.json")["test_accuracy"]}
    answers = [f for f in files if f.startswith("reports/answer/")]
    assert answers and set(files) == set(answers) | {f"reports/metrics/{s}.json"
                                                     for s in series | {"dense"}}
    for f in answers:
        assert set(files[f]["data"]) == {"diff_pp", "label"}
    # ... and the table fits a screen: DVC prints a file a row, a key a column.
    table = run(["dvc", "metrics", "show"], project).stdout.splitlines()
    assert len(table) == len(files) + 1 and max(map(len, table)) <= 100, "\n".join(table)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_saved_pruned_models_are_what_their_metrics_claim(
    project: Path, method: str, granularity: str
) -> None:
    name = f"{method}-{granularity}"
    m = metrics(project, f"finetune/{name}.json")
    choice = json.loads((project / f"search/{name}.json").read_text())
    chosen = choice["sparsity"]
    assert m["target_sparsity"] == chosen  # prune used the searched sparsity
    # ... and finetune repeated the chosen trial exactly (same masks, same seed).
    assert m["val_accuracy"] == choice["val_accuracy"]
    model = load_model(project / f"models/pruned/{name}/finetuned.safetensors")
    weights = [mod.weight for mod in model.body if hasattr(mod, "weight")]
    if granularity == "weight":
        # Count the zeros of the loaded file: the cut weights stayed exactly 0.0.
        prunable = weights[:-1]
        zeros = sum(int((w == 0).sum()) for w in prunable)
        assert zeros / sum(w.numel() for w in prunable) == pytest.approx(m["sparsity"])
        assert m["sparsity"] == pytest.approx(chosen, abs=1 / (784 * 128))
        mask = load_file(str(project / f"models/pruned/{name}/mask.safetensors"))
        for key, keep in mask.items():
            w = model.get_submodule(key.rsplit(".", 1)[0]).weight
            assert (w[keep == 0] == 0).all()
    else:
        # A smaller dense model: the cut hidden units are gone for real, and their number
        # is rounded to a multiple of prune.round_to (16) so that the model runs fast.
        (kept,) = model.spec.widths
        assert (kept % 16 == 0 or kept < 16) and abs(kept - (128 - round(chosen * 128))) <= 8
        assert weights[0].shape == (kept, 784) and weights[1].shape == (10, kept)
    assert sum(int(p.count_nonzero()) for p in model.parameters()) == m["parameters_remaining"]
    test = load_test(project / "data", limit=1000)
    assert evaluate(model, test).accuracy == m["test_accuracy"]
    assert m["effective_flops"] < m["dense_flops"]


@pytest.mark.slow
def test_each_pruned_run_is_in_mlflow_with_mask_and_model(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'prune'")
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"{m}-{g}" for m in METHODS for g in GRANULARITIES)
    for r in runs:
        name = r.info.run_name
        assert r.data.metrics["test_accuracy"] == metrics(project, f"finetune/{name}.json")[
            "test_accuracy"]
        assert r.data.params["method"] == name.split("-")[0]
        # The seed it fine-tuned with: the chosen search trial's, not params' `seed`.
        choice = json.loads((project / f"search/{name}.json").read_text())
        assert r.data.params["seed"] == str(choice["finetune_seed"])
        assert "mask.safetensors" in [a.path for a in client.list_artifacts(r.info.run_id)]
    seeds = [json.loads(p.read_text())["finetune_seed"]
             for p in (project / "search").glob("*.json")]
    assert set(seeds) != {0}, "every choice fine-tuned with params' seed: the check above is void"
    # One baseline per seed, none trained twice; the searched one (seed 0) is tagged.
    trained = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
    assert sorted(r.info.run_name for r in trained) == [f"mlp-baseline-seed{s}" for s in SEEDS]
    # The seeds' workers started together: none lost the race to create the experiment and
    # logged into the Default one (id 0) instead.
    assert client.search_runs(["0"]) == []
    (baseline,) = [r for r in trained if r.data.tags["searched"] == "true"]
    assert baseline.info.run_name == "mlp-baseline-seed0"
    assert len(client.get_metric_history(baseline.info.run_id, "val_accuracy")) == 3
    assert len(client.search_logged_models([exp.experiment_id])) == len(trained) + len(runs)
    # Logged without pickle, loadable by MLflow as a torch module that gives our logits.
    import mlflow.pytorch
    import torch

    (logged,) = [m for m in client.search_logged_models([exp.experiment_id])
                 if m.source_run_id == runs[0].info.run_id]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    module = mlflow.pytorch.load_model(logged.model_uri)
    name = runs[0].info.run_name
    ours = load_model(project / f"models/pruned/{name}/finetuned.safetensors")
    x = load_test(project / "data", limit=8).x
    assert torch.allclose(module(x), ours(x), atol=1e-5)


def test_stage_stops_on_bad_params_before_any_work(tmp_path: Path, mirror: Path) -> None:
    params = small_params(mirror)
    params["train"]["lr"] = -1
    proj = copy_project(tmp_path, params)
    proc = run(["prunelab", "download"], proj, _EXPECT_FAIL="1")
    assert proc.returncode == 2 and "train.lr" in proc.stderr and "greater than 0" in proc.stderr
    assert not (proj / "data").exists()


def sweep_points(proj: Path, name: str) -> list[dict]:
    return json.loads((proj / f"sweep/{name}.json").read_text())["points"]


@pytest.mark.slow
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_sweep_covers_every_ratio_and_seed_at_the_sparsity_it_claims(
    project: Path, granularity: str
) -> None:
    for method in METHODS:
        points = sweep_points(project, f"{method}-{granularity}")
        assert sorted((p["seed"], p["ratio"]) for p in points) == [
            (s, r) for s in SEEDS for r in RATIOS]
        for p in points:
            # Ratio r cuts 1 - 1/r of the prunable weights (the mlp's first layer): exactly,
            # to one weight, or to one of its 128 hidden units.
            step = 1 / (784 * 128) if granularity == "weight" else 1 / 128
            assert p["sparsity"] == pytest.approx(1 - 1 / p["ratio"], abs=step)
            seed_metrics = json.loads((project / f"models/seeds/{p['seed']}.json").read_text())
            assert p["baseline_test_accuracy"] == seed_metrics["test_accuracy"]
    # Seeds are different baselines, not one model evaluated twice.
    accs = {json.loads((project / f"models/seeds/{s}.json").read_text())["test_accuracy"]
            for s in SEEDS}
    assert len(accs) == len(SEEDS)
    # The random control is clearly worse before fine-tuning at the highest ratio.
    def before(method: str) -> float:
        pts = sweep_points(project, f"{method}-{granularity}")
        return statistics.fmean(p["test_accuracy_before"] for p in pts
                                if p["ratio"] == max(RATIOS))
    assert before("magnitude") > before("random") + 0.02


def best_on(rows: list[dict[str, str]], column: str) -> set[str]:
    top = max(float(row[column]) for row in rows)
    return {row["method"] for row in rows if float(row[column]) == top}


@pytest.mark.slow
def test_report_table_is_the_mean_and_sd_of_the_points_and_names_the_best(
    project: Path,
) -> None:
    every = list(csv.DictReader((project / "reports/summary.csv").open()))
    rows = [r for r in every if r["method"] not in CONTROLS]  # those: another test's
    points = list(csv.DictReader((project / "reports/points.csv").open()))
    assert not any("correct" in k for k in points[0])  # numbers only, no image bits
    assert len(rows) == len(METHODS) * len(GRANULARITIES) * len(RATIOS)
    text = (project / "reports/report.md").read_text()
    for row in rows:
        accs = [p["test_accuracy"] for p in sweep_points(project, f"{row['method']}-"
                                                                  f"{row['granularity']}")
                if p["ratio"] == float(row["ratio"])]
        assert len(accs) == len(SEEDS) == int(row["seeds"])
        assert float(row["test_accuracy"]) == pytest.approx(statistics.fmean(accs))
        assert float(row["test_accuracy_sd"]) == pytest.approx(statistics.stdev(accs))
        # ... and the committed per-point numbers give the same mean, without the sweep.
        committed = [float(q["test_accuracy"]) for q in points if q["method"] == row["method"]
                     and q["granularity"] == row["granularity"] and q["rounds"] == "1"
                     and float(q["ratio"]) == float(row["ratio"])]
        assert sorted(committed) == sorted(accs)
    for g in GRANULARITIES:
        for r in RATIOS:
            cell = [row for row in rows if row["granularity"] == g and float(row["ratio"]) == r]
            # Chosen on validation, not on the test images it is compared on (any of those
            # tied at the best mean val accuracy).
            after, before = text.split("## Verdicts before fine-tuning")
            (line,) = [ln for ln in after.splitlines() if ln.startswith(f"- **{g}, {r}× (")]
            assert any(f"**: {m} (" in line for m in best_on(cell, "val_accuracy"))
            assert "realised" in line
            # ... and again on the models before fine-tuning, chosen on their val accuracy.
            one_shot = [row for row in cell if row["method"] not in DURING_FINETUNING]
            (line,) = [ln for ln in before.splitlines() if ln.startswith(f"- **{g}, {r}× (")]
            assert any(f"**: {m} (" in line for m in best_on(one_shot, "val_accuracy_before"))
    for png in ("accuracy_vs_compression", "accuracy_vs_flops", "layer_sparsity"):
        assert (project / f"reports/figures/{png}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"(figures/{png}.png)" in text
    assert "not `mlp`" in text  # the paper check says the tables are for the LeNets
    assert text.index("## The answer") < text.index("## Verdicts after fine-tuning")
    assert "## Criterion quality against the true damage" in text
    # Every cell carries one of the four labels.
    cells = [ln for ln in text.splitlines() if ln.startswith("- **") and "×" in ln]
    assert len(cells) == 2 * len(GRANULARITIES) * len(RATIOS)  # after and before FT
    assert all(any(f"— **{label}**" in ln for label in LABELS) for ln in cells)


@pytest.mark.slow
def test_points_keep_their_test_predictions_and_matched_controls(project: Path) -> None:
    from prunelab.records import unpack_correct

    for method in METHODS:
        for granularity in GRANULARITIES:
            for p in sweep_points(project, f"{method}-{granularity}"):
                bits = unpack_correct(p["test_correct"], p["test_images"])
                assert p["test_images"] == 1000 and bits.mean() == p["test_accuracy"]
                # No matched random control on the mlp: one pruned layer (the output layer
                # is not pruned) and one hidden layer, so it would be random itself.
                assert "test_correct_matched_random" not in p
    oracle = json.loads((project / "oracle/oracle.json").read_text())
    assert set(oracle) == set(METHODS)
    for method in METHODS:
        for p in sweep_points(project, f"{method}-weight") + sweep_points(
                project, f"{method}-neuron"):
            # A model before fine-tuning exists, and is judged, only for a one-shot cut.
            assert ("test_correct_before" in p) == (method not in DURING_FINETUNING)
    # gmp cuts nothing before fine-tuning; its fine-tuning ends at the searched sparsity.
    assert metrics(project, "prune/gmp-weight.json")["sparsity"] == 0
    assert "— (cut while fine-tuning)" in (project / "reports/report.md").read_text()
    rho = oracle["magnitude"]["neuron"]["layer0"]["spearman"]["mean"]
    assert rho > oracle["random"]["neuron"]["layer0"]["spearman"]["mean"] + 0.1
    assert (project / "reports/figures/oracle_scatter.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_dvc_plots_show_renders_the_curves(project: Path) -> None:
    out = project / "dvc_plots"
    shown = json.loads(run(["dvc", "plots", "show", "--json", "-o", str(out)],
                           project).stdout)["data"]
    series = {f"{m}-{g}" for m in METHODS for g in GRANULARITIES}
    for name, y in (("after_vs_ratio", "test_accuracy"), ("after_vs_flops", "test_accuracy"),
                    ("before_vs_ratio", "test_accuracy_before"),
                    ("before_vs_flops", "test_accuracy_before")):
        (plot,) = shown[f"reports/plots/{name}.json"]
        content = plot["content"]
        assert content["layer"][1]["encoding"]["y"]["field"] == y  # the template was filled
        values = content["data"]["values"]
        drawn = series if name.startswith("after") else {
            x for x in series if x.split("-")[0] not in DURING_FINETUNING}
        # After fine-tuning, the controls too: dense+ft at 1×, scratch at each ratio.
        controls = {"dense+ft-weight": 1, "scratch-neuron": len(RATIOS)}
        if name.startswith("before"):
            controls = {}
        assert {v["series"] for v in values} == drawn | set(controls)
        assert len(values) == len(drawn) * len(RATIOS) + sum(controls.values())
        assert all(v["lo"] <= v[y] <= v["hi"] for v in values)  # a band around each mean
    # The answer per ratio: a difference and its simultaneous interval per contrast.
    (plot,) = shown["reports/plots/difference_vs_ratio.json"]
    values = plot["content"]["data"]["values"]
    assert {v["series"] for v in values} and all(v["lo"] <= v["diff_pp"] <= v["hi"]
                                                  for v in values)
    # Every plot dvc.yaml declares is drawn, the PNGs included; nothing fails to load.
    declared = [next(iter(p)) if isinstance(p, dict) else p for p in
                yaml.safe_load((project / "dvc.yaml").read_text())["plots"]]
    assert set(shown) == set(declared)
    for png in [p for p in declared if p.endswith(".png")]:
        (image,) = shown[png]
        assert Path(image["url"]).read_bytes()[:4] == b"\x89PNG"
    page = run(["dvc", "plots", "show", "-o", str(out)], project)
    assert "failed to load" not in page.stdout + page.stderr
    html = (out / "index.html").read_text()
    assert "Test accuracy after fine-tuning vs compression" in html


@pytest.mark.slow
def test_sweep_points_and_the_comparison_are_in_mlflow(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mlp-sweep")
    points = client.search_runs([exp.experiment_id], "tags.stage = 'sweep'",
                                max_results=1000)
    nested = [r for r in points if "mlflow.parentRunId" in r.data.tags]
    controls = [r for r in nested if r.data.tags["method"] in CONTROLS]
    nested = [r for r in nested if r.data.tags["method"] not in CONTROLS]
    # The iterative series' points under parents of their own, with the rounds they ran
    # and the whole fine-tuning budget (split over the rounds).
    in_rounds = [r for r in nested if r.data.params.get("rounds") == "2"]
    nested = [r for r in nested if r.data.params.get("rounds") != "2"]
    assert len(nested) == len(METHODS) * len(GRANULARITIES) * len(RATIOS) * len(SEEDS)
    assert len(in_rounds) == len(ITERATIVE) * len(GRANULARITIES) * len(RATIOS) * len(SEEDS)
    # Each run says the family of what its method reads (the UI filters on it).
    family = {"magnitude": "weights", "gmp": "weights", "random": "none"}
    assert all(r.data.tags["family"] == family[r.data.tags["method"]] for r in nested)
    assert {r.data.tags["family"] for r in controls} == {"control"}
    parents = {r.info.run_id: r.info.run_name for r in points}
    for r in in_rounds:
        m, g = r.data.tags["method"], r.data.tags["granularity"]
        assert parents[r.data.tags["mlflow.parentRunId"]] == f"sweep-{m}-{g}-2rounds"
        assert r.info.run_name.startswith(f"{m}-{g}-2rounds-r")
        assert r.data.params["finetune.epochs"] == "2"
        assert r.data.params["finetune.epochs_per_round"] == "1"
    # The controls log what they ran: dense+ft fine-tuning's settings, scratch training's
    # with the fine-tuning epochs added (one dense+ft per seed, one scratch per ratio too).
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert len(controls) == len(SEEDS) * (1 + len(RATIOS))
    for r in controls:
        if r.data.tags["method"] == "dense+ft":
            assert r.data.params["finetune.epochs"] == str(params["finetune"]["epochs"])
        else:
            assert r.data.params["train.epochs"] == str(
                params["train"]["epochs"] + params["finetune"]["epochs"])
    # Same param and metric names as the prune stage's run of the same method: one
    # compare view for all.
    finetuned = {(r.data.tags["method"], r.data.tags["granularity"]): r for r in
                 client.search_runs([client.get_experiment_by_name("mlp").experiment_id],
                                    "tags.stage = 'prune'")}
    assert params["sweep"]["neuron_scope"] != params["prune"]["scope"]  # else the check is void
    for r in nested:
        method, granularity = r.data.tags["method"], r.data.tags["granularity"]
        ft = finetuned[(method, granularity)]
        assert set(ft.data.params) <= set(r.data.params)
        # What the point ran with: units are cut with sweep.neuron_scope, not prune.scope;
        # gmp cuts the same fraction of every layer whatever either says, and has a schedule
        # where the others have rounds.
        ran = ("layer" if method in DURING_FINETUNING else params["sweep"]["neuron_scope"]
               if granularity == "neuron" else params["prune"]["scope"])
        assert r.data.params["scope"] == ran
        assert ("gradual_interval" in r.data.params) == (method in DURING_FINETUNING)
        assert ("rounds" in r.data.params) != (method in DURING_FINETUNING)
        assert r.data.params["seed"] == r.data.params["calibration_seed"]
        measured = {"test_accuracy", "compression_ratio", "effective_flops", "sparsity"}
        if method not in DURING_FINETUNING:
            measured.add("test_accuracy_before")
        assert measured <= set(r.data.metrics) & set(ft.data.metrics)
    (comparison,) = client.search_runs([exp.experiment_id], "tags.stage = 'report'")
    artifacts = {a.path for a in client.list_artifacts(comparison.info.run_id)}
    assert {"summary.json", "report.md", "figures"} <= artifacts
    figures = {a.path for a in client.list_artifacts(comparison.info.run_id, "figures")}
    assert "figures/accuracy_vs_compression.png" in figures


@pytest.mark.slow
def test_methods_that_cut_first_are_also_swept_in_rounds_and_compared(project: Path) -> None:
    """sweep.iterative_rounds [2]: magnitude and random (not gmp, which cuts while it
    fine-tunes) swept again in 2 rounds at every ratio and seed, cut to what one-shot
    cuts, and the report compares each with its one-shot series."""
    for granularity in GRANULARITIES:
        assert not (project / f"sweep/gmp-{granularity}-2rounds.json").exists()
        for method in ITERATIVE:
            once = {(p["seed"], p["ratio"]): p
                    for p in sweep_points(project, f"{method}-{granularity}")}
            twice = {(p["seed"], p["ratio"]): p
                     for p in sweep_points(project, f"{method}-{granularity}-2rounds")}
            assert set(twice) == set(once) == {(s, r) for s in SEEDS for r in RATIOS}
            for key, p in twice.items():
                assert (p["rounds"], once[key]["rounds"]) == (2, 1)
                # Equal realised compression: the same widths, or the same weights to one.
                assert abs(p["parameters_remaining"] - once[key]["parameters_remaining"]) <= 1
                assert "test_correct_matched_random" not in p  # beside the main series only
    headline = json.loads((project / "reports/headline.json").read_text())
    assert set(headline["in_rounds"]) == {f"{g}/{m}-2rounds" for g in GRANULARITIES
                                          for m in ITERATIVE}
    section = (project / "reports/report.md").read_text().split(
        "## One-shot or in rounds")[1].split("\n## ")[0]
    for g in GRANULARITIES:
        for m in ITERATIVE:
            (row,) = [x for x in section.splitlines() if x.startswith(f"| {g} | `{m}` | 2 |")]
            assert row.split("**")[1] in ("in rounds ahead", "one-shot ahead", "equivalent",
                                          "open")


@pytest.mark.slow
def test_the_report_lists_an_infeasible_point_and_judges_the_rest(
    project: Path, tmp_path: Path
) -> None:
    """A point that could not be realised carries no accuracies: the report counts it and
    gives its reason (the report once read every point's baseline accuracy and failed)."""
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(project / "sweep", sweep)
    path = sweep / "magnitude-neuron.json"
    data = json.loads(path.read_text())
    last = data["points"][-1]
    data["points"][-1] = {**{k: last[k] for k in ("method", "granularity", "ratio", "seed",
                                                 "rounds", "target_sparsity")},
                          "infeasible": "would cut every unit of layer0 (made by the test)"}
    path.write_text(json.dumps(data))
    out = tmp_path / "reports"
    run(["prunelab", "report", "--sweep-dir", str(sweep), "--search-dir", "search",
         "--prune-metrics-dir", "metrics/prune", "--finetune-metrics-dir", "metrics/finetune",
         "--oracle", "oracle/oracle.json", "--out-dir", str(out)], project,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "would cut every unit of layer0 (made by the test)" in (out / "report.md").read_text()
    cell = json.loads((out / "summary.json").read_text())["magnitude-neuron"][
        f"r{last['ratio']:g}"]
    assert cell["infeasible"] == 1 and cell["seeds"] == len(SEEDS) - 1


@pytest.mark.slow
def test_long_stages_say_where_they_are(project: Path) -> None:
    """One whole line per update in `dvc repro`'s log (not a terminal): k of n, the time
    elapsed, and an estimate of what is left until the last."""
    import re

    log = (project / "repro.log").read_text().splitlines()
    grid = len(METHODS) * len(GRANULARITIES) * 3  # search.trials
    # The methods' points, in 2 rounds too where they cut first, and the controls':
    # dense+ft per seed, scratch per neuron ratio.
    points = ((len(METHODS) + len(ITERATIVE)) * len(GRANULARITIES) * len(RATIOS) + 1
              + len(RATIOS)) * len(SEEDS)
    for what, unit, total in [("train", "baselines", len(SEEDS)),
                              ("search", "grid trials", grid), ("sweep", "points", points),
                              ("oracle", "seeds", len(SEEDS))]:
        said = [ln for ln in log if ln.startswith(f"{what}: ") and f" {unit}, " in ln]
        assert said, f"no progress line of {what} in the log"
        assert re.fullmatch(rf"{what}: {total} of {total} {unit}, \d+ (s|min \d+ s) elapsed",
                            said[-1]), said[-1]


@pytest.mark.slow
def test_the_controls_are_swept_and_compared_with_every_cell_s_best(project: Path) -> None:
    """dense+ft: one point per seed, nothing cut; scratch: per neuron ratio and seed, the
    cut models' size; in the report, each row's drop against dense+ft, and both in the
    verdicts' comparison tables."""
    dense = sweep_points(project, "dense+ft-weight")
    assert sorted(p["seed"] for p in dense) == SEEDS
    assert all(p["sparsity"] == 0 and p["compression_ratio"] == 1 for p in dense)
    scratch = sweep_points(project, "scratch-neuron")
    cut = {(p["seed"], p["ratio"]): p for p in sweep_points(project, "magnitude-neuron")}
    assert sorted((p["seed"], p["ratio"]) for p in scratch) == sorted(cut)
    for p in scratch:
        assert p["parameters_remaining"] == cut[(p["seed"], p["ratio"])]["parameters_remaining"]
    rows = list(csv.DictReader((project / "reports/summary.csv").open()))
    mag = next(r for r in rows if r["method"] == "magnitude" and r["granularity"] == "weight"
               and float(r["ratio"]) == RATIOS[0])
    by_seed = {p["seed"]: p["test_accuracy"] for p in dense}
    ours = [p for p in sweep_points(project, "magnitude-weight") if p["ratio"] == RATIOS[0]]
    assert float(mag["drop_vs_dense_ft"]) == pytest.approx(
        statistics.fmean(by_seed[p["seed"]] - p["test_accuracy"] for p in ours))
    text = (project / "reports/report.md").read_text()
    assert "| dense+ft |" in text and "| scratch |" in text


@pytest.mark.slow
def test_the_set_level_oracle_judges_every_criterion_s_set(project: Path) -> None:
    sets = json.loads((project / "oracle/sets.json").read_text())
    assert set(sets["sets"]) == set(sets["weight_sets"]) == {"greedy", *METHODS}
    for method in METHODS:
        assert set(sets["sets"][method]) == {f"r{r:g}" for r in RATIOS}
        for ratio, cell in sets["sets"][method].items():
            assert 0 <= cell["precision_at_k"]["mean"] <= 1
            greedy = sets["sets"]["greedy"][ratio]["accuracy"]["mean"]  # a mean of gaps
            assert cell["accuracy_gap_pp"]["mean"] == pytest.approx(
                100 * (greedy - cell["accuracy"]["mean"]))
    assert -1 <= sets["reliability"]["layer0"]["mean"] <= 1
    text = (project / "reports/report.md").read_text()
    assert "## Criterion quality by whole sets" in text and "**Weights**" in text
    assert "(figures/set_oracle.png)" in text
    headline = json.loads((project / "reports/headline.json").read_text())
    assert "set_gap_pp" in headline["magnitude-neuron"]
    assert "set_gap_pp" in headline["magnitude-weight"]
    assert "oracle_spearman" not in headline["magnitude-weight"]


@pytest.mark.slow
def test_every_method_has_one_look_in_every_figure_and_layers_their_names(
    project: Path
) -> None:
    """A method's colour, marker and dash are the same in every figure and panel (they
    once followed matplotlib's colour cycle, which the controls shifted), no two methods
    look alike, and every figure is readable at 100 % (at most 1600 px wide)."""
    from matplotlib.container import ErrorbarContainer
    from matplotlib.lines import Line2D

    from prunelab.analysis.stats import summarize
    from prunelab.config import parse_config
    from prunelab.stages.report import draw, first_differences, read_inputs

    cfg = parse_config(yaml.safe_load((project / "params.yaml").read_text()))
    inputs = read_inputs(cfg, {"sweep": project / "sweep", "search": project / "search",
                               "prune": project / "metrics/prune",
                               "finetune": project / "metrics/finetune"},
                         project / "oracle/oracle.json")
    diffs = first_differences(cfg, inputs["points"])
    assert diffs  # the difference figure is among them; its intervals are simultaneous
    assert all(d["sim_lo"] <= d["lo"] <= d["hi"] <= d["sim_hi"] for d in diffs)
    figs = draw(cfg, summarize(inputs["points"]), inputs, diffs)
    seen: dict[str, set[tuple[object, ...]]] = {}
    for fig in figs.values():
        assert fig.get_size_inches()[0] * 110 <= 1600  # saved at 110 dpi
        for ax in fig.axes:  # what each legend entry shows (a line, or an error bar's)
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                line = handle.lines[0] if isinstance(handle, ErrorbarContainer) else handle
                if isinstance(line, Line2D):
                    seen.setdefault(label, set()).add(
                        (line.get_color(), line.get_marker(), line.get_linestyle()))
    assert set(METHODS) | {"dense+ft", "scratch", "greedy"} <= set(seen)
    assert all(len(look) == 1 for look in seen.values()), seen
    assert len({next(iter(look)) for look in seen.values()}) == len(seen)
    assert seen["random"] == {("#000000", "x", "--")}  # a control: black, dashed
    (bars,) = [f for path, f in figs.items() if "layer_sparsity" in path]
    assert {label for ax in bars.axes for label in ax.get_legend_handles_labels()[1]} == \
        {"fc1", "fc2"}  # the mlp's two layers, not body.2.weight and body.4.weight
