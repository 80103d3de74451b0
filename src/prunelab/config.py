"""One typed, validated configuration object built from `params.yaml`, the single source of
every value and read only here: nothing has a default, so a missing key is reported like a
misspelt one. Before any stage works, an unknown key, a wrong type or an out-of-range
value raises `ConfigError` naming the key and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from prunelab.errors import PrunelabError

Granularity = Literal["weight", "neuron"]
ModelName = Literal["mlp", "lenet300", "lenet5"]
LrSchedule = Literal["constant", "cosine"]  # cosine: annealed to ~0 over the run's epochs
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class ConfigError(PrunelabError, ValueError):
    """A bad `params.yaml`: the message names each offending key and the fix."""


class _Strict(BaseModel):
    # extra="forbid" turns a misspelt key into an error instead of a silently ignored knob;
    # strict=True stops "0.1" (a string) or true (a bool) passing as a number.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DataConfig(_Strict):
    root: str
    sources: Annotated[list[str], Field(min_length=1)]
    timeout_s: Annotated[float, Field(gt=0)]
    val_size: Annotated[int, Field(ge=1, le=30000)]
    split_seed: int
    train_limit: Annotated[int, Field(ge=1)] | None
    test_limit: Annotated[int, Field(ge=1)] | None


class TrainConfig(_Strict):
    optimizer: Literal["sgd", "adam"]
    lr: Annotated[float, Field(gt=0)]
    momentum: Annotated[float, Field(ge=0, lt=1)]
    weight_decay: Annotated[float, Field(ge=0)]
    epochs: Annotated[int, Field(ge=1)]
    lr_schedule: LrSchedule
    batch_size: Annotated[int, Field(ge=1)]
    eval_batch_size: Annotated[int, Field(ge=1)]


# A method is a registered criterion's name (`criteria.registry`), checked against the
# registry by `methods.check` before any work: config.py knows no criterion.
MethodName = Annotated[str, Field(min_length=1)]


class PruneConfig(_Strict):
    methods: Annotated[list[MethodName], Field(min_length=1)]
    granularities: Annotated[list[Granularity], Field(min_length=1)]
    weight_sparsity: Fraction
    neuron_sparsity: Fraction
    thresholds: dict[str, Annotated[float, Field(ge=0)]]
    scope: Literal["global", "layer"]
    # Each layer's scores over their mean before a global ranking: scales differ by layer.
    normalize: bool
    prune_output_layer: bool
    calibration_batches: Annotated[int, Field(ge=1)]
    calibration_batch_size: Annotated[int, Field(ge=1)]
    round_to: Annotated[int, Field(ge=1)]
    gradual_interval: Annotated[int, Field(ge=1)]  # gmp, movement: steps between updates
    gradual_end: Annotated[float, Field(gt=0.0, le=1.0)]  # ... and the target reached
    seed: int

    # Duplicates and unknown names: `methods.check` (one line, against the registry).


class FinetuneConfig(_Strict):
    lr: Annotated[float, Field(gt=0)]  # Han et al. 2015: about a tenth of training's
    momentum: Annotated[float, Field(ge=0, lt=1)]
    epochs: Annotated[int, Field(ge=0)]
    penalty: Literal["none", "l1", "l2"]
    penalty_weight: Annotated[float, Field(ge=0)]
    # Cosine with a training-sized lr retrains (Renda et al. 2020, lr rewinding).
    lr_schedule: LrSchedule
    # 1 is one-shot; k > 1 reaches the target in k prune/fine-tune rounds, the epochs
    # split evenly over them (the same budget as one-shot).
    rounds: Annotated[int, Field(ge=1)]


class SearchConfig(_Strict):
    """The Optuna study that picks each method's sparsity on validation (knobs: params.yaml)."""

    trials: Annotated[int, Field(ge=1)]
    refine: Annotated[int, Field(ge=0)]
    weight_sparsity_range: Annotated[list[Fraction], Field(min_length=2, max_length=2)]
    neuron_sparsity_range: Annotated[list[Fraction], Field(min_length=2, max_length=2)]
    finetune_lr: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2,
                                                                       max_length=2)] | None
    max_accuracy_drop: Annotated[float, Field(ge=0, lt=1)]
    stop_margin: Annotated[float, Field(ge=0, lt=1)]
    seed: int

    @model_validator(mode="after")
    def _ranges(self) -> SearchConfig:
        for name in ("weight_sparsity_range", "neuron_sparsity_range", "finetune_lr"):
            lo_hi = getattr(self, name)
            if lo_hi is not None and not lo_hi[0] < lo_hi[1]:
                raise ValueError(f"search.{name} must be [low, high] with low < high, got {lo_hi}")
        return self


class SweepConfig(_Strict):
    ratios: Annotated[list[Annotated[float, Field(gt=1)]], Field(min_length=1)]
    seeds: Annotated[list[int], Field(min_length=1)]
    neuron_scope: Literal["layer", "global"]
    matched_random: bool
    controls: bool  # dense+ft and scratch (`prunelab.study.controls`)
    iterative_rounds: list[Annotated[int, Field(ge=2)]]  # each criterion also in k rounds

    @model_validator(mode="after")
    def _unique(self) -> SweepConfig:
        for name in ("ratios", "seeds", "iterative_rounds"):
            if len(set(values := getattr(self, name))) != len(values):
                raise ValueError(f"sweep.{name} lists a value twice: {values}")
        return self


class OracleConfig(_Strict):
    enabled: bool  # false: the stage measures nothing and the report leaves its sections out
    examples: Annotated[int, Field(ge=10)]  # held-out (validation) images the loss is on
    weights_per_layer: Annotated[int, Field(ge=10)]  # single weights sampled per layer


Alpha = Annotated[float, Field(gt=0, lt=0.5)]
Margin = Annotated[float, Field(gt=0, le=10)]


class QuestionConfig(_Strict):
    """One question of the report: its criteria against its references, a Holm family of
    its own (per granularity), so that another question leaves its numbers as they are."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]  # its id in metrics files
    ask: Annotated[str, Field(min_length=1)]  # the question, as the report's section asks it
    criteria: Annotated[list[MethodName], Field(min_length=1)]
    references: Annotated[list[MethodName], Field(min_length=1)]
    alpha: Alpha | None  # None: report.alpha
    equivalence_margin_pp: Margin | None  # None: report.equivalence_margin_pp

    @model_validator(mode="after")
    def _disjoint(self) -> QuestionConfig:
        if both := sorted(set(self.criteria) & set(self.references)):
            raise ValueError(f"question {self.name}: {both} both criterion and reference; "
                             "list each in one of the two")
        for name in ("criteria", "references"):
            values = getattr(self, name)
            if dup := sorted({v for v in values if values.count(v) > 1}):
                raise ValueError(f"question {self.name}: {name} lists {dup[0]!r} twice")
        return self


class WhenConfig(_Strict):
    """When to prune (`prunelab.when`, issue 38): pruning at initialisation beside the
    sweep's after-training points, on the same seeds (why each value: params.yaml)."""

    enabled: bool  # false: the stage computes nothing and the report leaves its section out
    # Names of `prunelab.when.init_point.AT_INIT`, checked by the stage before any work.
    methods: Annotated[list[MethodName], Field(min_length=1)]
    ratios: Annotated[list[Annotated[float, Field(gt=1)]], Field(min_length=1)]
    sanity: bool  # each method's mask also shuffled within layers, and on fresh weights
    synflow_rounds: Annotated[int, Field(ge=1)]
    # Training after the cut; None: train.epochs + finetune.epochs, what an after-training
    # point has seen in all (the procedures compared at equal total epochs).
    epochs: Annotated[int, Field(ge=1)] | None
    # The question at initialisation: its criteria and references are among `methods`.
    question: QuestionConfig

    @model_validator(mode="after")
    def _unique(self) -> WhenConfig:
        for name in ("methods", "ratios"):
            if len(set(values := getattr(self, name))) != len(values):
                raise ValueError(f"when.{name} lists a value twice: {values}")
        q = self.question
        if missing := [m for m in (*q.criteria, *q.references) if m not in self.methods]:
            raise ValueError(f"when.question names {missing[0]!r}, not among when.methods "
                             f"{self.methods}: add it there or drop it from the question")
        return self


class ReportConfig(_Strict):
    """What the report answers, and how strictly (why each value: params.yaml)."""

    questions: list[QuestionConfig]  # none: the report answers no question, only the cells
    alpha: Alpha  # family-wise, per granularity (the cells; a question's by default)
    equivalence_margin_pp: Margin
    power: Annotated[float, Field(ge=0.5, lt=1)]  # for the seeds an open comparison needs
    # ... planned on this upper confidence limit of the seed variance (None: its estimate)
    power_assurance: Annotated[float, Field(ge=0.5, lt=1)] | None
    # Per granularity, the highest ratio of sweep.ratios its questions' area runs to
    # (None or absent: the whole ladder).
    area_up_to: dict[Granularity, Annotated[float, Field(gt=1)] | None]
    # The committed plan (a path from the project's root) that fixed this run's questions
    # before its data existed; None: the analysis is exploratory.
    plan: str | None
    # The confirmatory run's committed report (relative to reports/), whose one-sentence
    # answers an exploratory report quotes first; None: quote none.
    confirmation: str | None

    @model_validator(mode="after")
    def _unique(self) -> ReportConfig:
        names = [q.name for q in self.questions]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"report.questions: two questions are named {dup[0]!r}")
        return self


class ComputeConfig(_Strict):
    """One machine's workers, threads and kernels' code path (why: params.yaml)."""
    workers: Literal["auto"] | Annotated[int, Field(ge=1)]  # "auto": cores // threads
    threads: Annotated[int, Field(ge=1)]  # torch threads per process; results depend on it
    cpu_capability: Literal["native", "avx2"]  # ATen's kernels (`prunelab.cpu`)


class OptunaConfig(_Strict):
    # null: a journal file in studies/; a database URL shares the studies across machines.
    storage: str | None  # PRUNELAB_OPTUNA_STORAGE, when set, wins over this
    heartbeat_s: Annotated[int, Field(ge=1)]  # RDB storages: a silent worker's trial fails
    retries: Annotated[int, Field(ge=0)]  # how often a failed trial is run again
    # How long each storage call rides out a lost connection before the stage gives up.
    retry_s: Annotated[float, Field(gt=0)]


class MlflowConfig(_Strict):
    # The environment variable MLFLOW_TRACKING_URI, when set, wins over this.
    tracking_uri: str
    retry_s: Annotated[float, Field(gt=0)]  # as optuna.retry_s, for the tracking store


class Config(_Strict):
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    model: ModelName
    data: DataConfig
    train: TrainConfig
    prune: PruneConfig
    # Each criterion's own settings by name (its registration's dataclass checks them:
    # `methods.check`); a criterion not listed runs with its defaults.
    criteria: dict[str, dict[str, Any] | None]
    # Criteria from outside this package beyond installed entry points: "module" or
    # "module:attr" paths (`criteria.registry`).
    extra_criteria: list[str]
    finetune: FinetuneConfig
    search: SearchConfig
    sweep: SweepConfig
    oracle: OracleConfig
    when: WhenConfig
    report: ReportConfig
    compute: ComputeConfig
    optuna: OptunaConfig
    mlflow: MlflowConfig

    @model_validator(mode="after")
    def _seed_has_a_baseline(self) -> Config:
        # One set of baselines: the searched operating points use the `seed` one.
        if self.seed not in self.sweep.seeds:
            raise ValueError(f"seed {self.seed} must be one of sweep.seeds {self.sweep.seeds} "
                             "(the train stage trains one baseline per seed there); add it")
        ft = self.finetune  # rounds share its epochs evenly (`pruning.round_budget`)
        for k in sorted({ft.rounds, *self.sweep.iterative_rounds}):
            if ft.epochs % k:
                raise ValueError(f"finetune.epochs ({ft.epochs}) must split evenly over {k} "
                                 "rounds (finetune.rounds, sweep.iterative_rounds)")
        if ft.rounds in self.sweep.iterative_rounds:
            raise ValueError(f"sweep.iterative_rounds lists finetune.rounds ({ft.rounds}), "
                             "what the main series run already: remove it")
        return self


def _describe(err: ErrorDetails) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{key}: required key is missing"
    got = "" if isinstance(err.get("input"), dict) else f" (got {err.get('input')!r})"
    return f"{key}: {err['msg']}{got}"


def parse_config(raw: Any, source: str = "params.yaml") -> Config:
    """Validate an already-parsed mapping; raise ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level, got {raw!r}")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(lines)) from None


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `1e-3` is a string; read it as the float users mean."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789."))


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate `params.yaml`; the returned object is frozen."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; run from the project root or pass --params")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, str(path))
