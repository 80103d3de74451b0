"""Pre-specified paired contrasts between two named methods, cell by cell: what one
ingredient is worth, measured by itself. Here OBS's update (`obs` against `obs-noupdate`:
the same cut, with and without the surgeon's update of what is left), before and after
fine-tuning. The statistics are `stats.paired_difference` (crossed SE, Satterthwaite df);
p-values are Holm-adjusted over the cells of one moment (before, or after, fine-tuning).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prunelab.records import Point, feasible, unpack_correct
from prunelab.stats import holm, paired_difference

# (the method, its ablation): contrasts the report makes wherever both were swept.
ABLATIONS = (("obs", "obs-noupdate"),)


def contrast(points: Iterable[Point], method: str, other: str,
             stage: str = "") -> list[dict[str, Any]]:
    """Per (granularity, ratio) where both ran on the same seeds: `method` minus `other`
    on test (`stage="_before"`: right after the cut), Holm over the cells."""
    by_cell: dict[tuple[str, float], dict[str, dict[int, Any]]] = {}
    key = f"test_correct{stage}"
    for p in feasible(points):
        if p["method"] in (method, other) and key in p:
            by_cell.setdefault((p["granularity"], p["ratio"]), {}).setdefault(
                p["method"], {})[p["seed"]] = p
    out = []
    for (granularity, ratio), methods in sorted(by_cell.items(),
                                                key=lambda c: (c[0][0] != "weight", c[0][1])):
        seeds = sorted(set(methods.get(method, {})) & set(methods.get(other, {})))
        if not seeds:
            continue
        bits = {m: [unpack_correct(methods[m][s][key], methods[m][s]["test_images"])
                    for s in seeds] for m in (method, other)}
        out.append({"granularity": granularity, "ratio": ratio, "method": method,
                    "other": other, **paired_difference(bits[method], bits[other])})
    for c, p_adj in zip(out, holm([c["p"] for c in out]), strict=True):
        c["p_holm"] = p_adj
    return out
