"""The budgets table (`reports/experiments/budgets/plan.md`): each primary contrast's
difference, interval and label at every fine-tuning budget, and how each budget's label
stands to the reference budget's by the plan's rule (`prunelab.analysis.budgets`).

Run from the project root with one report.md per budget arm (an arm not yet run is
given as `none` and shown as "not run"; two arms of one budget, e.g. its weight and its
neuron run, are given as two --arm of that budget and read as one):

    .venv/bin/python scripts/budget_table.py --arm 1=reports/experiments/budgets/ft1/report.md \
        --arm 3=reports/confirmatory/report.md --arm 10=none --reference 3

Prints Markdown (reports/experiments/budgets.md keeps the run of issue 37).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prunelab.analysis.budgets import Contrast, Key, budget_rows, read_contrasts


def arm(spec: str) -> tuple[int, Path | None]:
    """`EPOCHS=PATH` (or `EPOCHS=none`) as given on the command line."""
    epochs, _, path = spec.partition("=")
    if not epochs.isdigit() or not path:
        raise argparse.ArgumentTypeError(f"--arm {spec!r}: write it as EPOCHS=REPORT.md "
                                         "(or EPOCHS=none for an arm not yet run)")
    return int(epochs), None if path == "none" else Path(path)


def read_arm(path: Path | None) -> dict[Key, Contrast] | None:
    if path is None:
        return None
    if not path.is_file():
        raise SystemExit(f"error: no report {path}: run the arm's `dvc exp run` (plan.md) "
                         "and copy its reports/ there first, or give the arm as EPOCHS=none")
    return read_contrasts(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", type=arm, action="append", required=True,
                    help="EPOCHS=report.md of the arm at that budget, or EPOCHS=none")
    ap.add_argument("--reference", type=int, required=True,
                    help="the budget every other is compared with (the confirmatory's 3)")
    args = ap.parse_args()
    arms: dict[int, dict[Key, Contrast] | None] = {}
    for epochs, path in args.arm:
        read = read_arm(path)
        if read is not None:
            if overlap := set(arms.get(epochs) or {}) & set(read):
                raise SystemExit(f"error: two reports of {epochs} epochs both state "
                                 f"{sorted(overlap)[0]}: give each contrast once per budget")
            read = {**(arms.get(epochs) or {}), **read}
        arms[epochs] = read if read is not None else arms.get(epochs)
    if args.reference not in arms:
        raise SystemExit(f"error: --reference {args.reference} is not one of the arms "
                         f"{sorted(arms)}: add --arm {args.reference}=report.md")
    rows = budget_rows(arms, args.reference)
    budgets = [str(e) for e in sorted(arms)]
    heads = [f"{e} epoch{'s' * (e != '1')} (pp)" for e in budgets]
    print("| granularity | contrast | " + " | ".join(heads)
          + f" | against {args.reference} epochs |")
    print("|---|---|" + "---|" * len(budgets) + "---|")
    for r in rows:
        print(f"| {r['granularity']} | {r['contrast']} | "
              + " | ".join(r[e] for e in budgets) + f" | {r['against the reference']} |")
    changed = [f"{r['granularity']} {r['contrast']} ({r['against the reference']})"
               for r in rows if "changes" in r["against the reference"]]
    print("\nLabels that contradict the reference budget's: "
          + ("; ".join(changed) if changed else "none") + ".")


if __name__ == "__main__":
    main()
