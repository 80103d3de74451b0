"""Does pinning the CPU code paths make a baseline byte-identical, and what does it cost?

A fresh clone on an AVX2 machine (no AVX-512) moved every float of the study (issue 22):
torch's own kernels (ATen) and MKL's sgemm pick their code path by the CPU they run on.
Each knob that torch and its libraries honour pins one of them, read at process start:

- `ATEN_CPU_CAPABILITY=avx2`: ATen's vectorised kernels (reductions, softmax, optimiser
  steps) use their AVX2 build, not AVX-512.
- `MKL_CBWR=AVX2`: MKL's conditional numerical reproducibility, its AVX2 code path on any
  CPU that has AVX2 (Intel's CNR mode; sgemm of nn.Linear).
- `ONEDNN_MAX_CPU_ISA=AVX2`: oneDNN (convolutions, LeNet-5) at most AVX2.

Each setting trains the seed-`seed` baseline of params.yaml (its model and train section,
`--epochs` of them) in a process of its own with the setting's environment, and prints
the SHA-256 of the trained weights, the test accuracy and the median seconds per epoch.
Settings take turns, `--repeats` rounds, so this machine's drifting speed hits them alike;
the cost is the ratio of medians to the native one's, in the same run.

Run from the project root after `dvc repro download`:

    .venv/bin/python benchmarks/isa.py [--epochs 10] [--repeats 2] [--model mlp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys

SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "aten avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl avx2": {"MKL_CBWR": "AVX2"},
    "pinned (all three)": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2",
                           "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def child(epochs: int, model_name: str | None) -> None:
    """Train one baseline in this process (its environment already set) and print JSON."""
    import torch

    from prunelab.config import load_config
    from prunelab.models import build_model
    from prunelab.settings import test_split, train_settings, train_val_splits
    from prunelab.training import evaluate, fit, seed_everything

    torch.set_num_threads(1)
    cfg = load_config("params.yaml")
    settings = train_settings(cfg)
    settings = type(settings)(**{**settings.__dict__, "epochs": epochs})
    train, val = train_val_splits(cfg)
    seed_everything(cfg.seed)
    model = build_model(model_name or cfg.model)
    history = fit(model, train, val, settings, cfg.seed)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    _, test_acc = evaluate(model, test_split(cfg), settings.eval_batch_size)
    print(json.dumps({"sha256": digest.hexdigest()[:16], "test_accuracy": test_acc,
                      "seconds_per_epoch": statistics.median(r.seconds for r in history),
                      "aten": torch.backends.cpu.get_cpu_capability()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=None, help="mlp | lenet300 | lenet5 (params.yaml's)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.epochs, args.model)
        return
    base_env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, env in SETTINGS.items():
            cmd = [sys.executable, __file__, "--child", "--epochs", str(args.epochs)]
            cmd += ["--model", args.model] if args.model else []
            out = subprocess.run(cmd, env={**base_env, **env}, check=True,
                                 capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    native = statistics.median(float(r["seconds_per_epoch"]) for r in runs["native"])
    print("| setting | ATen path | weights SHA-256 (all repeats) | test accuracy "
          "| s/epoch (median) | vs native |\n|---|---|---|---|---|---|")
    for name, rs in runs.items():
        sec = statistics.median(float(r["seconds_per_epoch"]) for r in rs)
        shas = sorted({str(r["sha256"]) for r in rs})
        print(f"| {name} | {rs[0]['aten']} | {', '.join(shas)} | "
              f"{100 * float(rs[0]['test_accuracy']):.2f} % | {sec:.3f} | {sec / native:.2f}× |")


if __name__ == "__main__":
    main()
