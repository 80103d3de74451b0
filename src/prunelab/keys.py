"""The keys of the work: every search study, prune task, sweep point and oracle truth is
named by a digest of exactly what it runs, so that a change recomputes what it touches and
nothing else (stale is worse than slow: whatever can change a number is in a key).

A key hashes the params it reads (never the whole dump: another method's settings, the
list of methods, where MNIST came from or how many workers run change none of its
numbers), the code of the shared procedure (`codedeps.procedure_digest`: its module and
what that imports, the plumbing left out) and, for a criterion's work, that criterion's own
code and settings (`criterion_part`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from functools import cache
from typing import Any

from prunelab import codedeps
from prunelab.config import Config
from prunelab.methods import registry, settings_of

# What changes no result in any unit of work: where MNIST came from, how many workers run
# (the threads stay: they change the arithmetic).
NEVER = {"data": ("sources",), "compute": ("workers",)}
# prune.* knobs that choose *which* work exists, or serve only `prunelab prune` by hand
# without a search's choice: no unit's numbers depend on them.
WHICH_WORK = ("methods", "granularities", "thresholds", "weight_sparsity", "neuron_sparsity")


def sha(*parts: str | bytes) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update((p.encode() if isinstance(p, str) else p) + b"\0")
    return h.hexdigest()


def params_part(cfg: Config, sections: Iterable[str],
                ignored: Mapping[str, Iterable[str]] | None = None) -> str:
    """These params sections as JSON, less the keys that change no result and `ignored`."""
    dump = cfg.model_dump()
    relevant = {k: dump[k] for k in sections}
    for section, names in {**NEVER, **(ignored or {})}.items():
        for name in names:
            if isinstance(relevant.get(section), dict):
                relevant[section].pop(name, None)
    return json.dumps(relevant, sort_keys=True, default=str)


@cache
def procedure(module: str) -> str:
    """The shared procedure's code digest, once per process (the sources do not change
    while a stage runs)."""
    return codedeps.procedure_digest(module)


@cache
def _criterion_code(module: str) -> str:
    return codedeps.criterion_digest(module)


def criterion_part(cfg: Config, method: str) -> str:
    """A criterion's own code (the module that registered it and what that imports) and
    its settings (`criteria.<method>`)."""
    reg = registry(cfg)[method]
    settings = json.dumps(asdict(settings_of(cfg, method)), sort_keys=True, default=str)
    return sha(method, _criterion_code(reg.module), settings)


def study_digest(cfg: Config, sections: Iterable[str], module: str,
                 ignored: Mapping[str, Iterable[str]] | None = None, *more: str) -> str:
    """8 hex digits: these params, the procedure `module` runs, and `more` (a criterion's
    part, a baseline's bytes)."""
    return sha(params_part(cfg, sections, ignored), procedure(module), *more)[:8]


def file_digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:8]


def criteria_manifest(cfg: Config) -> dict[str, Any]:
    """Every registered criterion's name, family, kind, granularities, module and code
    digest: the small file DVC watches (`prunelab criteria`), so that a criterion's edit,
    wherever its module lives, reruns the stages that may use it."""
    return {name: {"family": r.family, "kind": r.kind, "granularities": list(r.granularities),
                   "module": r.module, "code": _criterion_code(r.module)[:12]}
            for name, r in sorted(registry(cfg).items())}
