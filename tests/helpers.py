"""Test helpers: a throw-away copy of the project to run the real pipeline in, and the
2-3-2 networks the hand-worked tests set weights on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The longest command of the suite (a whole pipeline on slices) takes ~2 min; a stuck one
# must fail with its output, not eat the CI budget.
RUN_TIMEOUT_S = 600


def copy_project(dest: Path, params: dict[str, Any]) -> Path:
    """Copy the project's files (tracked, or untracked and not ignored) and write `params`."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    return dest


def small_params(mirror: Path, **overrides: Any) -> dict[str, Any]:
    """The shipped params.yaml on a slice of MNIST: seconds per stage."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(sources=[str(mirror)], train_limit=3000, val_size=500, test_limit=1000)
    params["train"].update(epochs=3)
    for key, value in overrides.items():  # "section.leaf" keys
        section, leaf = key.split(".")
        params[section][leaf] = value
    if "prune.methods" in overrides and "report.questions" not in overrides:
        fit_questions(params)
    return params


def fit_questions(params: dict[str, Any]) -> None:
    """A question may name only methods the run prunes (`methods.check`): the shipped one,
    narrowed to them, or else the first method as the reference of the second."""
    methods = params["prune"]["methods"]
    q = params["report"]["questions"][0]
    crit = [m for m in q["criteria"] if m in methods]
    refs = [m for m in q["references"] if m in methods]
    if not (crit and refs):
        refs, crit = methods[:1], methods[1:2]
    params["report"]["questions"] = [{**q, "criteria": crit, "references": refs}] if crit else []


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command with this venv's executables first on PATH; fail with its output."""
    full_env = {**os.environ, **env}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in env else None
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:  # a hang fails here, with what it printed
        raise AssertionError(f"{cmd} still running after {RUN_TIMEOUT_S} s:\n"
                             f"{_text(exc.stdout)}\n{_text(exc.stderr)}") from None
    if proc.returncode != 0 and not env.get("_EXPECT_FAIL"):
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _text(out: str | bytes | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


def shipped_fit(**changes: Any) -> Any:
    """params.yaml's fine-tuning settings with `changes` (the dataclass has no defaults)."""
    from dataclasses import replace

    from prunelab.config import load_config
    from prunelab.settings import finetune_settings

    return replace(finetune_settings(load_config(ROOT / "params.yaml")), **changes)


def shipped_prune(method: str, granularity: str, **changes: Any) -> Any:
    """params.yaml's pruning settings for one criterion with `changes`."""
    from dataclasses import replace

    from prunelab.config import load_config
    from prunelab.prune.settings import prune_settings

    s = prune_settings(load_config(ROOT / "params.yaml"), method, granularity)
    return replace(s, **{"round_to": 1, **changes})


def net_2_3_2(w1: list[list[float]], w2: list[list[float]]) -> Any:  # a prunelab Net
    """x (2) -> W1 (3x2) -> ReLU -> W2 (2x3) -> logits, biases zero: a network small enough
    to work its scores out by hand."""
    import torch
    from torch import nn

    from prunelab.models import ModelSpec, Net

    body = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)]
    net = Net(ModelSpec("tiny", (3,)), body)
    with torch.no_grad():
        body[0].weight.copy_(torch.tensor(w1))
        body[2].weight.copy_(torch.tensor(w2))
        body[0].bias.zero_()
        body[2].bias.zero_()
    return net
