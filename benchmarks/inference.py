"""Inference latency and throughput of the baseline against its pruned versions, beside
each version's FLOP reduction, measured with torch.utils.benchmark in one run.

Run from the project root after `dvc repro train` (it reads the baseline):

    .venv/bin/python benchmarks/inference.py [--model models/seeds/0.safetensors]
                                             [--device cpu|cuda] [--min-run-time 2]

Versions (pruned from the baseline by magnitude, without fine-tuning: speed does not
depend on the weights' values):
- weight-masked, dense kernels: 90% of the prunable weights zero, same shapes — the same
  FLOPs are executed, so no gain is expected;
- weight-pruned, sparse CSR: the same 90%-sparse weights as torch.sparse_csr_tensor,
  multiplied with torch.sparse.mm (what "effective FLOPs" assume a kernel could skip);
- neuron-pruned: 50%, 60%, 75% and 90% of the hidden units removed (`surgery.remove_units`,
  counts rounded as params.yaml's prune.round_to says), a smaller dense model whose FLOPs
  really fall; and the pipeline's searched neuron-pruned models.
The FLOP reduction is dense FLOPs / FLOPs (effective FLOPs for the sparse version), from
`prunelab.metrics.pruning_metrics`. Figures are medians of `blocked_autorange`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils import benchmark

from prunelab.config import load_config
from prunelab.criteria.magnitude_activity import magnitude_scores, magnitude_unit_scores
from prunelab.metrics import pruning_metrics
from prunelab.models import Net, baked, load_model
from prunelab.prune.masks import apply_masks, prunable_names, select, select_units
from prunelab.prune.surgery import remove_units


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W held in CSR: torch.sparse.mm(W, xᵀ)ᵀ."""

    def __init__(self, dense: nn.Linear) -> None:
        super().__init__()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we know
            warnings.simplefilter("ignore", UserWarning)
            self.weight = dense.weight.detach().to_sparse_csr()
        self.bias = dense.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self.weight, x.t()).t() + self.bias


def with_sparse_linears(model: Net) -> nn.Module:
    """A copy whose Linear layers run on CSR weights (Conv layers stay dense)."""
    body = [SparseLinear(m) if isinstance(m, nn.Linear) else m for m in baked(model).body]
    return nn.Sequential(*body).eval()


def timed(model: nn.Module, batch: int, device: torch.device, min_run_time: float) -> float:
    """Median seconds per forward pass of `batch` images."""
    x = torch.rand(batch, 1, 28, 28, device=device)
    t = benchmark.Timer(stmt="with torch.inference_mode(): model(x)",
                        globals={"model": model, "x": x, "torch": torch},
                        num_threads=torch.get_num_threads())
    return t.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="for prune.round_to")
    ap.add_argument("--model", default="models/seeds/0.safetensors")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--min-run-time", type=float, default=0.5, help="seconds per timing")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--searched", nargs="*", default=sorted(
        str(p) for p in Path("models").glob("*-neuron/finetuned.safetensors")),
        help="also time these neuron-pruned model files (default: the pipeline's)")
    ap.add_argument("--weight-sparsity", type=float, default=0.9)
    ap.add_argument("--neuron-sparsity", type=float, nargs="+", default=[0.5, 0.6, 0.75, 0.9])
    args = ap.parse_args()
    device = torch.device(args.device)
    round_to = load_config(args.params).prune.round_to  # widths as the pipeline prunes
    base = load_model(args.model, device).eval()
    names = prunable_names(base, prune_output_layer=False)

    scores = magnitude_scores(base)
    masks = select({k: scores[k] for k in names}, sparsity=args.weight_sparsity)  # type: ignore[call-overload]
    masked = baked(apply_masks(baked(base), masks)).eval()
    unit_scores = magnitude_unit_scores(base)

    def reduction(model: Net, effective: bool = False) -> float:
        m = pruning_metrics(model, base.spec, names)
        return m["dense_flops"] / (m["effective_flops"] if effective else m["flops"])

    versions: list[tuple[str, nn.Module, float]] = [
        ("baseline", base, 1.0),
        (f"weight-masked {args.weight_sparsity:.0%}, dense kernels", masked, reduction(masked)),
    ]
    if device.type == "cpu":  # CSR × dense on CUDA needs cuSPARSE set-up not worth it here
        versions.append((f"weight-pruned {args.weight_sparsity:.0%}, sparse CSR",
                         with_sparse_linears(masked), reduction(masked, effective=True)))
    for s in args.neuron_sparsity:
        # Exact unit counts, and the counts rounded as the pipeline does when that differs.
        for r in dict.fromkeys((1, round_to)):
            small = remove_units(base, select_units(unit_scores, r, sparsity=s)).eval()
            if r > 1 and small.spec.widths == versions[-1][1].spec.widths:
                continue
            label = f"neuron-pruned {s:.0%} {small.spec.widths}" + (
                f", rounded to {r}" if r > 1 else "")
            versions.append((label, small, reduction(small)))
    for path in args.searched:
        small = load_model(path, device).eval()
        versions.append((f"{path} {small.spec.widths}", small, reduction(small)))

    # The sparse model must give the masked model's outputs, or its timing means nothing.
    x = torch.rand(64, 1, 28, 28, device=device)
    with torch.inference_mode():
        for name, model, _ in versions:
            if "sparse" in name:
                torch.testing.assert_close(model(x), masked(x), rtol=1e-4, atol=1e-4)

    # Machine noise drifts over seconds, so versions are timed in interleaved rounds and
    # each figure is the median over rounds of blocked_autorange medians.
    times: dict[tuple[int, int], list[float]] = {}
    for _ in range(args.rounds):
        for i, (_, model, _) in enumerate(versions):
            for b in (1, 256):
                times.setdefault((i, b), []).append(timed(model, b, device, args.min_run_time))
    t = {k: statistics.median(v) for k, v in times.items()}

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"{base.spec.name} from {args.model}; machine {platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {gpu or 'cpu'}; median over {args.rounds} interleaved rounds of "
          f"torch.utils.benchmark blocked_autorange medians\n")
    print("| version | FLOP reduction | batch 1 latency (µs) | speed-up | "
          "batch 256 throughput (img/s) | speed-up | speed-up / FLOP reduction (b256) |")
    print("|---|---|---|---|---|---|---|")
    for i, (name, _, flop_red) in enumerate(versions):
        s1, s256 = t[0, 1] / t[i, 1], t[0, 256] / t[i, 256]
        print(f"| {name} | {flop_red:.2f}x | {t[i, 1] * 1e6:.1f} | {s1:.2f}x | "
              f"{256 / t[i, 256]:,.0f} | {s256:.2f}x | {s256 / flop_red:.2f} |")

if __name__ == "__main__":
    main()
