"""When to prune, analysed as the sweep is (`contrasts.primary`, the same paired statistics
and labels): the question at initialisation — do SNIP, GraSP and SynFlow choose better than
magnitude or random at θ₀? — and the sanity checks of Frankle et al. 2021, each method
against its own mask shuffled within layers and on re-initialised weights.

The points (`prunelab when`) carry a `variant`; here a method's own mask keeps the
method's name and a variant is `<method>+<variant>`, so the sweep's analysis compares them
as it compares methods: on the area under test accuracy over log₂ compression, paired by
seed (θ₀, calibration and data order) and by test image. A method *survives* the checks
when it is ahead of both of its variants (one Holm family per method: its two contrasts);
equivalent or behind, its choice within layers carried nothing the per-layer densities do
not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prunelab.analysis.contrasts import primary
from prunelab.records import Point, as_point

MASK = "mask"  # the variant that is the method's own mask (`when.init_point.VARIANTS`)
_EXTRA = ("variant", "procedure", "epochs")


def named(point: Mapping[str, Any]) -> str:
    """How the analysis names a point: its method, or `<method>+<variant>`."""
    return point["method"] if point["variant"] == MASK else f"{point['method']}+{point['variant']}"


def as_points(points: Iterable[Mapping[str, Any]]) -> list[Point]:
    """The points at initialisation as sweep points under their analysis names."""
    return [as_point({**{k: v for k, v in p.items() if k not in _EXTRA}, "method": named(p)},
                     f"when point {named(p)} ratio {p['ratio']:g} seed {p['seed']}")
            for p in points]


def at_init(points: Iterable[Mapping[str, Any]], criteria: Sequence[str],
            references: Sequence[str], ratios: Sequence[float], margin: float, alpha: float,
            power: float, assurance: float | None = None) -> dict[str, Any]:
    """`question`: each of `criteria` against each of `references` (their own masks), one
    Holm family; `sanity`: per method with variants, its mask against each variant, one
    family per method, and whether it `survives` (ahead of both)."""
    pts = as_points(points)
    methods = {p["method"] for p in pts}
    ladder = {"weight": list(ratios)}
    sanity = {}
    for m in sorted({n.split("+")[0] for n in methods if "+" in n}):
        found = primary(pts, [m], sorted(n for n in methods if n.startswith(f"{m}+")),
                        ladder, margin, alpha, power, assurance)
        sanity[m] = {"contrasts": found, "survives": bool(found) and all(
            c["answer"].startswith("ahead") for c in found)}
    return {"question": primary(pts, list(criteria), list(references), ladder, margin,
                                alpha, power, assurance), "sanity": sanity}
