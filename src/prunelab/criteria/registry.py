"""The criteria registry: every criterion, built-in or brought from outside, is one
`Registration` (OpenLTH's strategies by name; Torch-Pruning's importance objects, settings
bound when built).

A registration names the criterion, the family it reads from (what a question groups by),
its kind (a score; a surgeon that also updates what is left; a cut made while
fine-tuning), a builder per granularity it supports, and its own settings dataclass with
defaults, read from `params.yaml` under `criteria.<name>:`.

Where criteria come from, in this order:
- every module of this package (`prunelab/criteria/*.py` but `base` and `registry`):
  a built-in is a file here that calls `register`; no list to edit;
- the entry points of group `prunelab.criteria` of every installed distribution, each a
  module that registers on import or a `Registration`;
- the `module` or `module:attr` paths in params.yaml's `extra_criteria`.

A criterion's code is the module that registered it (`Registration.module`) and what
that imports: the keys of its work hash that, and no other criterion's (`codedeps`).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, get_args, get_type_hints

from prunelab.criteria.base import Criterion
from prunelab.criteria.scoring import Scores, UnitScores
from prunelab.errors import PrunelabError

Family = Literal["loss gradient", "input statistics", "weights", "none"]
Kind = Literal["score", "surgeon", "during fine-tuning"]
GRANULARITIES = ("weight", "neuron")
ENTRY_POINTS = "prunelab.criteria"
_NOT_CRITERIA = {"base", "registry", "scoring"}


class RegistryError(PrunelabError, ValueError):
    """A criterion that cannot be registered or loaded, or a name that is not one."""


@dataclass(frozen=True)
class NoSettings:
    """The settings of a criterion that has none."""


# (the criterion's settings, the calibration seed) -> the criterion, its settings bound.
WeightBuilder = Callable[[Any, int], Criterion[Scores]]
NeuronBuilder = Callable[[Any, int], Criterion[UnitScores]]


@dataclass(frozen=True)
class Registration:
    """One criterion: what it is, what it reads, and how each granularity builds it.
    `control`: a control every comparison needs (random), never a criterion a question
    ranks. `ablation_of`: the criterion this one is with a part taken out (the report
    compares the two). `cite`: the paper and equation it implements."""

    name: str
    family: Family
    kind: Kind
    weight: WeightBuilder | None
    neuron: NeuronBuilder | None
    settings: type = NoSettings
    cite: str = ""
    control: bool = False
    ablation_of: str | None = None
    module: str = field(default="", compare=False)

    @property
    def granularities(self) -> tuple[str, ...]:
        return tuple(g for g in GRANULARITIES if self.builder(g) is not None)

    def builder(self, granularity: str) -> WeightBuilder | NeuronBuilder | None:
        return {"weight": self.weight, "neuron": self.neuron}[granularity]

    def build(self, granularity: str, settings: Any, seed: int) -> Criterion[Any]:
        """The criterion at `granularity` with `settings` (its dataclass) and `seed` bound."""
        make = self.builder(granularity)
        if make is None:
            raise RegistryError(f"criterion {self.name!r} has no {granularity} granularity "
                                f"(it has {list(self.granularities)}): drop it from "
                                "prune.granularities or the method from prune.methods")
        criterion: Criterion[Any] = make(settings, seed)
        return criterion

    def parse_settings(self, raw: dict[str, Any] | None) -> Any:
        """Its settings dataclass from params.yaml's `criteria.<name>` (None: defaults);
        an unknown key or a wrong type is one line naming the key and the fix."""
        raw = raw or {}
        known = {f.name: f for f in fields(self.settings)}
        if unknown := sorted(set(raw) - set(known)):
            raise RegistryError(f"criteria.{self.name}.{unknown[0]}: unknown setting; "
                                f"{self.name} takes {sorted(known) or 'none'}")
        from pydantic import TypeAdapter, ValidationError

        hints = get_type_hints(self.settings)
        values = {}
        for name, value in raw.items():
            try:  # strict: "0.1" (a string) or true (a bool) is not a number
                values[name] = TypeAdapter(hints[name]).validate_python(value, strict=True)
            except ValidationError as exc:
                raise RegistryError(f"criteria.{self.name}.{name}: "
                                    f"{exc.errors()[0]['msg']} (got {value!r})") from None
        return self.settings(**values)


_REGISTRY: dict[str, Registration] = {}
_loaded: set[str] = set()  # the sources already imported, so each loads once per process


def register(reg: Registration, module: str | None = None) -> Registration:
    """Add a criterion: call it at the top level of the module that defines it, whose code
    (with what it imports) is then the criterion's (`Registration.module`; `module`, or
    else the caller's)."""
    module = reg.module or module or sys._getframe(1).f_globals["__name__"]
    reg = Registration(**{**{f.name: getattr(reg, f.name) for f in fields(reg)},
                          "module": module})
    if reg.family not in get_args(Family) or reg.kind not in get_args(Kind):
        raise RegistryError(f"criterion {reg.name!r}: family must be one of "
                            f"{list(get_args(Family))}, kind one of {list(get_args(Kind))}")
    if not reg.granularities:
        raise RegistryError(f"criterion {reg.name!r} builds neither granularity")
    if not is_dataclass(reg.settings):
        raise RegistryError(f"criterion {reg.name!r}: settings must be a dataclass")
    if (old := _REGISTRY.get(reg.name)) is not None and old.module != reg.module:
        raise RegistryError(f"criterion {reg.name!r} is registered by {old.module} and by "
                            f"{reg.module}: rename one")
    _REGISTRY[reg.name] = reg
    return reg


def _load(source: str) -> None:
    """Import a module (it registers on import) or `module:attr` (a Registration)."""
    if source in _loaded:
        return
    module, _, attr = source.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"cannot load criteria from {source!r}: {exc}; install its "
                            "package or fix extra_criteria in params.yaml") from None
    if isinstance(obj, Registration):
        register(obj, module)
    _loaded.add(source)


def registered(extra: Iterable[str] = ()) -> dict[str, Registration]:
    """Every criterion: the built-ins, the installed entry points', then `extra`'s."""
    if "builtin" not in _loaded:
        import prunelab.criteria as package

        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.name not in _NOT_CRITERIA:
                _load(f"prunelab.criteria.{info.name}")
        for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
            _load(ep.value)
        _loaded.add("builtin")
    for source in extra:
        _load(source)
    return dict(_REGISTRY)


def lookup(name: str) -> Registration:
    """The registration of `name`, loading the built-ins and entry points if needed."""
    found = registered().get(name)
    if found is None:
        raise RegistryError(f"unknown criterion {name!r}; registered: {sorted(_REGISTRY)} "
                            "(an outside one: install its package or list it in "
                            "extra_criteria)")
    return found
