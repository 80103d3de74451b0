"""Check the power estimate on validation images only: the seeds each primary contrast is
said to need, estimated from one sweep's seeds (the pilot), against how often it closes at
that many seeds of another sweep's (the check), every n-seed subset of the check tried
(`prunelab.analysis.calibration`). No test image is read.

Run from the project root with two sweep output folders of the same params but their
seeds (each a `dvc repro sweep`, or `dvc exp run`, of its own):

    .venv/bin/python scripts/power_calibration.py --pilot sweep --check ../other/sweep \
        [--sizes 2 3 4 5] [--params params.yaml]

Prints Markdown (reports/experiments/power-calibration.md keeps the run of issue 37).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prunelab.analysis.calibration import calibrate, summary
from prunelab.config import load_config
from prunelab.methods import parse
from prunelab.prune.granularity import GRANULARITIES
from prunelab.records import Point, read_points
from prunelab.stages.report import area_ratios


def sweep_points(folder: Path) -> list[Point]:
    """Every point of a sweep folder's one-shot series (the iterative ones apart)."""
    if not folder.is_dir():
        raise SystemExit(f"error: no sweep folder {folder}: run `dvc repro sweep` there first")
    return [p for f in sorted(folder.glob("*.json")) if parse(f.stem)[1] in GRANULARITIES
            for p in read_points(f)]


def _rate(row: dict[str, Any], n: int) -> str:
    rate = row["closed"].get(n)
    if rate is None:
        return ""
    return f"**{rate:.2f}**" if n == row["predicted"] else f"{rate:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pilot", type=Path, required=True, help="the sweep folder that estimates")
    ap.add_argument("--check", type=Path, required=True, help="the sweep folder that checks")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    cfg = load_config(args.params)
    rc = cfg.report
    pilot, check = sweep_points(args.pilot), sweep_points(args.check)
    seeds = {name: sorted({p["seed"] for p in pts}) for name, pts in
             (("pilot", pilot), ("check", check))}
    if set(seeds["pilot"]) & set(seeds["check"]):
        raise SystemExit(f"error: the pilot's seeds {seeds['pilot']} and the check's "
                         f"{seeds['check']} overlap: the check must be on other seeds")
    print(f"Pilot seeds {seeds['pilot']}, check seeds {seeds['check']}, validation images "
          f"only; α = {rc.alpha}, power {rc.power}, margin ±{rc.equivalence_margin_pp} pp. "
          "Bold: the closure rate at the predicted count.\n")
    sizes = [n for n in args.sizes if n <= len(seeds["check"])]
    for q in rc.questions:
        margin = (q.equivalence_margin_pp or rc.equivalence_margin_pp) / 100
        rows = calibrate(pilot, check, q.criteria, q.references, area_ratios(cfg), margin,
                         q.alpha or rc.alpha, rc.power, sizes, rc.power_assurance)
        print(f"### Question `{q.name}`\n")
        print("| granularity | contrast | pilot diff (pp) | predicted seeds | check diff (pp) "
              "| check label | " + " | ".join(f"closed at {n}" for n in sizes) + " |")
        print("|---|---|---|---|---|---|" + "---|" * len(sizes))
        for r in rows:
            print(f"| {r['granularity']} | {r['method']} vs {r['other']} | "
                  f"{r['pilot_diff']:+.2f} | {r['predicted'] or '>1000'} | "
                  f"{r['check_diff']:+.2f} | {r['check_label']} | "
                  + " | ".join(_rate(r, n) for n in sizes) + " |")
        s = summary(rows, rc.power)
        mean = s["mean_closed_at_predicted"]
        print(f"\n{s['reachable']} of {s['contrasts']} contrasts are predicted to close within "
              f"the check's {len(seeds['check'])} seeds; at the predicted count they close "
              + (f"{mean:.2f} of the time on average, {s['meeting_power']} of them at least "
                 f"{rc.power:g} of the time" if mean is not None else "(none to check)")
              + f"; {s['beyond']} are predicted to need more seeds than the check has.\n")


if __name__ == "__main__":
    main()
