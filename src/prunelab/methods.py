"""Methods as params.yaml names them, checked against the criteria registry: the one place
that builds and splits a `<method>-<granularity>` key and that says which pairs a run has.

`check(cfg)` runs before any stage works (the CLI calls it): an unregistered method, a
criterion setting that is unknown or of the wrong type, a question naming a method the run
does not prune, a threshold key that is no pair: each one line naming the fix.
"""

from __future__ import annotations

from typing import Any

from prunelab.config import Config, ConfigError
from prunelab.criteria.registry import Registration, RegistryError, registered

# The control criterion every comparison needs (its registration says `control`): the
# matched-random control cuts with it, the scratch control takes its widths.
RANDOM = "random"


# The names of the controls swept beside the methods (`records.CONTROLS`), for checking a
# question's references: spelt here because records imports this module (an import back
# would be a cycle, and moving them into records' imports would move every key);
# test_config checks that the two agree.
CONTROLS = ("dense+ft", "scratch")


def key(method: str, granularity: str) -> str:
    """"taylor-neuron": a method-granularity's name in files, studies and MLflow."""
    return f"{method}-{granularity}"


def parse(name: str) -> tuple[str, str]:
    """("obs-noupdate", "weight") from "obs-noupdate-weight": a method's name may hold a
    hyphen, a granularity's does not."""
    method, _, granularity = name.rpartition("-")
    return method, granularity


def registry(cfg: Config) -> dict[str, Registration]:
    """Every registered criterion, params.yaml's `extra_criteria` loaded too."""
    try:
        return registered(cfg.extra_criteria)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None


def settings_of(cfg: Config, method: str) -> Any:
    """The method's own settings (its dataclass) from `criteria.<method>`, else defaults."""
    try:
        return registry(cfg)[method].parse_settings(cfg.criteria.get(method))
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None


def pairs(cfg: Config) -> list[tuple[str, str]]:
    """(method, granularity) for every method and each of its granularities the run
    prunes at, in params.yaml's order."""
    regs = registry(cfg)
    return [(m, g) for m in cfg.prune.methods for g in cfg.prune.granularities
            if g in regs[m].granularities]


def check(cfg: Config) -> dict[str, Registration]:
    """Refuse, in one line each, what the registry cannot run; return the registry."""
    regs = registry(cfg)
    p = cfg.prune
    for name in ("methods", "granularities"):
        values = getattr(p, name)
        if dup := sorted({v for v in values if values.count(v) > 1}):
            raise ConfigError(f"prune.{name} lists {dup[0]!r} twice: list each once")
    for m in p.methods:
        if m not in regs:
            raise ConfigError(f"prune.methods: {m!r} is not a registered criterion "
                              f"({', '.join(sorted(regs))}); fix its spelling, install its "
                              "package or add it to extra_criteria")
        if not set(regs[m].granularities) & set(p.granularities):
            raise ConfigError(f"prune.methods: {m!r} prunes only at "
                              f"{list(regs[m].granularities)}, none of prune.granularities")
    for name in cfg.criteria:
        if name not in regs:
            raise ConfigError(f"criteria.{name}: not a registered criterion; fix its "
                              "spelling or remove the section")
        settings_of(cfg, name)
    allowed = {key(m, g) for m, g in pairs(cfg)}
    if bad := sorted(set(p.thresholds) - allowed):
        raise ConfigError(f"prune.thresholds: unknown key {bad[0]!r}; keys look like "
                          f"'<method>-<granularity>', one of {sorted(allowed)}")
    for granularity, top in cfg.report.area_up_to.items():
        if top is not None and top < min(cfg.sweep.ratios):
            raise ConfigError(f"report.area_up_to.{granularity} ({top:g}) is below every "
                              f"ratio of sweep.ratios {cfg.sweep.ratios}: its questions would "
                              "have no area; raise it or set it to null")

    for q in cfg.report.questions:
        for m in q.criteria:
            if m not in p.methods:
                raise ConfigError(f"report.questions {q.name}: {m!r} is not among "
                                  "prune.methods; add it there or drop it from the question")
        for m in q.references:  # a reference may also be a control (dense+ft, scratch)
            if m in CONTROLS and not cfg.sweep.controls:
                raise ConfigError(f"report.questions {q.name}: the control {m!r} is swept "
                                  "only with sweep.controls true; set it or drop the reference")
            if m not in p.methods and m not in CONTROLS:
                raise ConfigError(f"report.questions {q.name}: {m!r} is neither among "
                                  f"prune.methods nor a control {sorted(CONTROLS)}; add it "
                                  "there or drop it from the question")
    return regs
