"""One look per method for every figure: a colour and marker fixed across figures and
panels, colour-blind safe, controls grey and dashed. No DVC or MLflow here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Paul Tol's "muted" scheme (https://personal.sron.nl/~pault/): nine colours told apart
# with every common colour-vision deficiency. Past nine criteria a colour comes round
# again with another marker and a dash-dot line, so no two curves look alike.
PALETTE = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677",
           "#882255", "#AA4499")
MARKERS = ("o", "s", "^", "D")
# Controls and references that are not criteria: grey shades, dashed, their own markers.
CONTROL_LOOKS = {"random": ("#000000", "x"), "dense+ft": ("#777777", "*"),
                 "scratch": ("#AAAAAA", "P"), "greedy": ("#444444", "v")}


@dataclass(frozen=True)
class Look:
    color: str
    marker: str
    linestyle: str

    def line(self) -> dict[str, Any]:
        """Keyword arguments for `Axes.plot`."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


def looks(criteria: Iterable[str]) -> dict[str, Look]:
    """Each criterion's look (by its place in the sorted names, so that the same set of
    criteria always looks the same), and every control's."""
    out = {name: Look(color, marker, "--") for name, (color, marker) in CONTROL_LOOKS.items()}
    for i, name in enumerate(sorted(set(criteria) - set(CONTROL_LOOKS))):
        round_ = i // len(PALETTE)
        out[name] = Look(PALETTE[i % len(PALETTE)], MARKERS[round_ % len(MARKERS)],
                         "-" if round_ == 0 else "-.")
    return out
