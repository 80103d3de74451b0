"""Does the answer hold across fine-tuning budgets? (`reports/experiments/budgets/plan.md`)

Each budget arm is a whole run of the study with only `finetune.epochs` changed; its
report states each primary contrast's difference, simultaneous interval and label, from
its own Holm families. This module reads those statements back from the arms' `report.md`
and sets each contrast's label beside the reference arm's, by the plan's rule: a label
*contradicts* another when their directions are reversed (ahead against behind), or when
one puts the difference inside the margin (equivalent, "…within the margin") and the other
wholly past it ("…beyond the margin"). "open" contradicts nothing: it is no evidence either
way, and is reported as open, never as "holds". Whether the difference itself moves with
the budget (an interaction across arms) is not tested here: each arm's interval speaks for
its own budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from prunelab.analysis.contrasts import ANSWERS
from prunelab.errors import PrunelabError

# "- `taylor` vs `magnitude`: -0.86 pp [-0.97, -0.75] over 10 seeds; ... — **behind ...**"
_LINE = re.compile(r"^- `(?P<criterion>[^`]+)` vs `(?P<reference>[^`]+)`: "
                   r"(?P<diff>[+-]?\d+\.\d+) pp \[(?P<low>[+-]?\d+\.\d+), "
                   r"(?P<high>[+-]?\d+\.\d+)\] over (?P<seeds>\d+) seeds;"
                   r".* — \*\*(?P<label>[^*]+)\*\*")
_GRANULARITY = re.compile(r"^\*\*(?P<granularity>\w+) granularity\*\* — ")

Key = tuple[str, str, str]  # granularity, criterion, reference


@dataclass(frozen=True)
class Contrast:
    """One primary contrast as an arm's report states it (differences in pp of area)."""

    granularity: str
    criterion: str
    reference: str
    diff_pp: float
    low_pp: float
    high_pp: float
    seeds: int
    label: str

    @property
    def key(self) -> Key:
        return self.granularity, self.criterion, self.reference


def read_contrasts(report_md: str) -> dict[Key, Contrast]:
    """The primary contrasts of one report.md, in the order it states them. Each question's
    contrasts follow the line that names their granularity ("**weight granularity** — …")."""
    granularity: str | None = None
    out: dict[Key, Contrast] = {}
    for line in report_md.splitlines():
        if g := _GRANULARITY.match(line):
            granularity = g["granularity"]
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        if granularity is None or m["label"] not in ANSWERS:
            raise PrunelabError(f"report line {line[:60]!r}… has no granularity before it or "
                                f"an unknown label: is this a prunelab report.md?")
        c = Contrast(granularity, m["criterion"], m["reference"], float(m["diff"]),
                     float(m["low"]), float(m["high"]), int(m["seeds"]), m["label"])
        out[c.key] = c
    return out


def direction(label: str) -> int:
    """+1 for a label that says ahead, −1 behind, 0 for equivalent and open."""
    return 1 if label.startswith("ahead") else -1 if label.startswith("behind") else 0


def _inside(label: str) -> bool:
    return label == "equivalent" or label.endswith("within the margin")


def contradicts(label: str, other: str) -> bool:
    """The plan's rule: reversed directions, or inside the margin against beyond it."""
    if direction(label) * direction(other) < 0:
        return True
    beyond = label.endswith("beyond the margin"), other.endswith("beyond the margin")
    return (beyond[0] and _inside(other)) or (beyond[1] and _inside(label))


def verdict(reference: str, label: str) -> str:
    """How a contrast's label at a budget stands to the reference budget's."""
    if label == reference:
        return "same"
    if label == "open":
        return "open here"
    if reference == "open":
        return "decided here"
    return "changes" if contradicts(reference, label) else "consistent"


def budget_rows(arms: Mapping[int, Mapping[Key, Contrast] | None],
                reference: int) -> list[dict[str, str]]:
    """One row per contrast of the reference arm: per budget (epochs), the difference,
    interval and label (or "not run"), and how each other budget's label stands to the
    reference's."""
    ref = arms[reference]
    if ref is None:
        raise PrunelabError(f"the reference budget ({reference} epochs) has no report: "
                            "it is what every other budget is compared with")
    rows = []
    for key, c in ref.items():
        row = {"granularity": key[0], "contrast": f"{key[1]} vs {key[2]}"}
        changes = []
        for epochs, arm in sorted(arms.items()):
            other = None if arm is None else arm.get(key)
            if other is None:
                row[f"{epochs}"] = "not run"
                continue
            row[f"{epochs}"] = (f"{other.diff_pp:+.2f} [{other.low_pp:+.2f}, "
                                f"{other.high_pp:+.2f}] {other.label}")
            if epochs != reference:
                changes.append(f"{epochs}: {verdict(c.label, other.label)}")
        row["against the reference"] = "; ".join(changes) or "—"
        rows.append(row)
    return rows
