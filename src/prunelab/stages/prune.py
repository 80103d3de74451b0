"""`prunelab prune`: every method × granularity applied to the searched baseline at its
search's choice and fine-tuned (`pruning.prune_model`, then `pruning.finetune_pruned`, the
procedure a search trial runs), one task per method-granularity on the worker processes,
as `train` and `sweep` are. Each task opens its MLflow run and registers its model.

A task writes `<out-dir>/<method>-<granularity>/` (pruned, mask, spec, finetuned) as a whole
and its two metrics files, and last `inputs.json`: a digest of what it read (its settings,
choice file, baseline, code) and of the metrics files it wrote. DVC reruns this stage as a
whole when any input moves; a task whose digest still matches is kept, not run again, so a
`dvc repro` after a kill, or after changing one method's choice, recomputes only what moved.
Delete a task's folder to recompute it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from prunelab import keys
from prunelab.artifacts import FINETUNED, MASK, PRUNED, load_pruned, save_pruned
from prunelab.config import Config, load_config
from prunelab.data import mnist_digest
from prunelab.errors import PrunelabError
from prunelab.methods import key
from prunelab.metrics import accuracies, file_size, point_record
from prunelab.models import baked, load_model, resolve_device, save_model
from prunelab.plumbing import model_registry, tracking
from prunelab.plumbing.fileio import atomic_dir, read_json, write_json
from prunelab.plumbing.progress import progress
from prunelab.prune.granularity import Pruned
from prunelab.prune.procedure import finetune_pruned, prune_model
from prunelab.prune.settings import prune_settings
from prunelab.prune.spec import run_params
from prunelab.records import read_choice
from prunelab.settings import finetune_seed, finetune_settings, test_split, train_val_splits
from prunelab.stages import method_tags
from prunelab.workers import worker_pool

INPUTS = "inputs.json"


@dataclass(frozen=True)
class Paths:
    """Where the stage reads (`choices` None: params.yaml's sparsities) and writes."""

    baseline: Path
    choices: Path | None
    out_dir: Path
    prune_metrics: Path
    finetune_metrics: Path

    def of(self, name: str) -> tuple[Path | None, Path, Path, Path]:
        """One task's choice file, folder, and metrics before and after fine-tuning."""
        return (self.choices / f"{name}.json" if self.choices else None, self.out_dir / name,
                self.prune_metrics / f"{name}.json", self.finetune_metrics / f"{name}.json")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def task_digest(cfg: Config, method: str, granularity: str, paths: Paths) -> str:
    """What one task's results depend on: the settings it runs (`spec.run_params`, so
    another method's params do not count), the params sections every task reads, its
    choice file, the baseline's bytes, the procedure's code and its criterion's own code
    and settings (`keys`)."""
    choice_path = paths.of(key(method, granularity))[0]
    choice = read_choice(choice_path) if choice_path else None
    ran = run_params(prune_settings(cfg, method, granularity, choice),
                              finetune_settings(cfg, choice), finetune_seed(cfg, choice))
    dump = keys.params_part(cfg, ("seed", "device", "model", "data", "train", "compute"))
    h = hashlib.sha256(json.dumps([ran, dump], sort_keys=True, default=str).encode())
    for part in ([choice_path] if choice_path else []) + [paths.baseline]:
        h.update(_sha(part).encode())
    h.update(keys.procedure(__name__).encode())
    h.update(keys.criterion_part(cfg, method).encode())
    return h.hexdigest()


def is_current(paths: Paths, name: str, digest: str) -> bool:
    """Whether the task's outputs are those of these inputs: its digest, and metrics files
    unchanged since it wrote them (a kill after they were written, before its folder was,
    leaves the old digest)."""
    _, folder, before, after = paths.of(name)
    try:
        done = read_json(folder / INPUTS)
        return bool(done["digest"] == digest and done["metrics"] == [_sha(before), _sha(after)]
                    and all((folder / f).is_file() for f in (PRUNED, MASK, FINETUNED)))
    except (OSError, ValueError, KeyError, TypeError):
        return False


class _Worker:
    """One worker process's data (test included: the stage reports test accuracy)."""

    def __init__(self, params: str, paths: Paths) -> None:
        self.cfg, self.paths = load_config(params), paths
        tracking.configure(self.cfg.mlflow)
        self.train, self.val = train_val_splits(self.cfg)
        self.splits = {"val": self.val, "test": test_split(self.cfg)}


def _prune_and_finetune(w: _Worker, task: tuple[str, str, str]) -> str:
    """Prune, fine-tune, log; the folder (with `inputs.json`) is renamed into place last."""
    method, granularity, digest = task
    cfg, name, device = w.cfg, key(method, granularity), resolve_device(w.cfg.device)
    choice_path, folder, before_path, after_path = w.paths.of(name)
    choice = read_choice(choice_path) if choice_path else None
    s = prune_settings(cfg, method, granularity, choice)
    settings, seed = finetune_settings(cfg, choice), finetune_seed(cfg, choice)
    base = load_model(w.paths.baseline, device)
    with atomic_dir(folder) as tmp:
        # The chosen trial's seed, so that rounds > 1 fine-tune between rounds as it did.
        save_pruned(prune_model(base, w.train, w.val, s, settings, seed), tmp)
        # Fine-tuned from the saved files, as a reader of this folder would load them.
        model, kept = load_pruned(tmp, granularity, device), load_file(str(tmp / MASK))
        before = point_record(model, base.spec, s, {
            "model_bytes": file_size(tmp / PRUNED),
            **accuracies(model, w.splits, cfg.train.eval_batch_size)})
        params = run_params(s, settings, seed)
        tags = method_tags(cfg, "prune", method, granularity)
        import mlflow

        with tracking.stage_run(cfg.model, name, tags, params):
            tracking.log_mnist(cfg.data.root, mnist_digest())
            # A method that prunes during fine-tuning (gmp, movement) makes its cut here.
            pruned = finetune_pruned(Pruned(model, kept, {}), w.train, w.val, s, settings,
                                     seed, on_epoch=tracking.log_epoch)
            save_model(pruned.model, tmp / FINETUNED)
            after = point_record(pruned.model, base.spec, s, {
                "model_bytes": file_size(tmp / FINETUNED),
                "val_accuracy_before": before["val_accuracy"],
                "test_accuracy_before": before["test_accuracy"],
                **accuracies(pruned.model, w.splits, settings.eval_batch_size)})
            tracking.log_record(after, skip=params)
            with tempfile.TemporaryDirectory() as t:  # the final cut (gradual: made here)
                save_file(pruned.mask_tensors(), f"{t}/{MASK}")
                mlflow.log_artifact(f"{t}/{MASK}")
            model_registry.log_torch_model(
                baked(pruned.model), registered_model_name=f"{cfg.model}-{name}")
        write_json(before_path, before)
        write_json(after_path, after)
        write_json(tmp / INPUTS, {"digest": digest,
                                  "metrics": [_sha(before_path), _sha(after_path)]})
    return (f"{name}: sparsity {before['sparsity']:.4f}, test {after['test_accuracy']:.4f} "
            f"after fine-tuning (was {before['test_accuracy']:.4f})")


def _remove_others(paths: Paths, names: set[str]) -> None:
    """The outputs of method-granularities params.yaml no longer lists: a stale file there
    would be read as a result."""
    for old in [p for p in paths.out_dir.iterdir() if p.is_dir() and p.name not in names]:
        shutil.rmtree(old)
    for d in (paths.prune_metrics, paths.finetune_metrics):
        for old in [p for p in d.glob("*.json") if p.stem not in names]:
            old.unlink()


def run(cfg: Config, params: Path, pairs: list[tuple[str, str]], baseline: Path,
        choices: Path | None, out_dir: Path, prune_metrics: Path, finetune_metrics: Path,
        workers: int, every: bool) -> None:
    """Prune and fine-tune each (method, granularity) of `pairs` whose outputs are not
    current; with `every` (the whole of params.yaml's), remove any other's outputs."""
    paths = Paths(baseline, choices, out_dir, prune_metrics, finetune_metrics)
    missing = [str(p) for p in [baseline, *(paths.of(key(m, g))[0] for m, g in pairs)]
               if p and not p.is_file()]
    if missing:
        raise PrunelabError(f"missing input(s) {missing}; run `dvc repro search` (it writes "
                            "the baseline's choices after `train` writes the baselines)")
    tracking.configure(cfg.mlflow)  # before any work: fail fast if unreachable
    digests = {(m, g): task_digest(cfg, m, g, paths) for m, g in pairs}  # reads inputs
    todo = [(m, g, d) for (m, g), d in digests.items() if not is_current(paths, key(m, g), d)]
    print(f"prune: {len(pairs)} method-granularities, {len(todo)} to compute"
          + (f", {len(pairs) - len(todo)} unchanged (kept)" if len(todo) < len(pairs) else ""),
          flush=True)
    for d in (paths.out_dir, paths.prune_metrics, paths.finetune_metrics):
        d.mkdir(parents=True, exist_ok=True)
    if todo:
        with worker_pool(_Worker, (str(params), paths), max(1, min(workers, len(todo))),
                         cfg.compute.threads) as imap:
            for line in progress(imap(_prune_and_finetune, todo), len(todo), "prune", "models"):
                print(line, flush=True)
    if every:
        _remove_others(paths, {key(m, g) for m, g in pairs})
