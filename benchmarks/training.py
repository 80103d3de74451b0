"""Seconds per training epoch of the `mlp` at batch 64: the design document's loop against
prunelab's, and a fine-tuning epoch with 90% of the weights masked, in one run.

Run from the project root after `dvc repro download` (it needs data/):

    .venv/bin/python benchmarks/training.py [--repeats 5] [--device cpu|cuda]

- document loop: torchvision MNIST with `transforms.ToTensor()`, a shuffled DataLoader
  (batch 64, default workers), nn.Sequential(Flatten, 784-128 Linear, ReLU, 128-10 Linear),
  CrossEntropyLoss on logits, SGD lr 0.01 momentum 0.9 — the design document's loop with
  its bugs removed (they do not change its speed). It reads exactly the images of
  prunelab's training split (a Subset with the same indices), so both do the same work,
  and runs in a process of its own (see `in_own_process`).
- prunelab loop: `prunelab.training.train_epoch` on the in-memory split (params.yaml's
  train section), the model from `build_model`.
- masked fine-tuning: the same loop on a copy with 90% of the weights cut by magnitude
  and held by torch.nn.utils.prune (the forward pass multiplies weight_orig by the mask).

Every figure is the median over `--repeats` rounds (after one warm-up epoch each); in a
round each loop runs one epoch in turn.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import torch
from torch import nn

from prunelab.config import load_config
from prunelab.criteria.magnitude_activity import magnitude_scores
from prunelab.data import load_train_val
from prunelab.models import build_model
from prunelab.prune.masks import apply_masks, prunable_names, select
from prunelab.settings import train_settings
from prunelab.training import make_optimizer, train_epoch


def interleaved_medians(loops: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds per epoch of each loop (each call runs one epoch and returns its
    seconds). The loops take turns, one epoch each per round, so that this machine's
    drifting speed (a shared VM) hits them alike."""
    for run_epoch in loops.values():
        run_epoch()  # warm-up: allocator, kernels, the dataset's first decode
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, run_epoch in loops.items():
            times[name].append(run_epoch())
    return {name: statistics.median(t) for name, t in times.items()}


def timed(epoch: Callable[[], None]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        epoch()
        return time.perf_counter() - start

    return run


def _document_worker(conn: Connection, root: str, indices: list[int], device: str) -> None:
    run = timed(document_loop(root, torch.tensor(indices), torch.device(device)))
    try:
        while conn.recv():
            conn.send(run())
    except EOFError:  # the parent is done
        pass


def in_own_process(root: str, indices: torch.Tensor, device: torch.device) -> Callable[[], float]:
    """The document loop in a process of its own, as the document's script would run: run
    in this process, its many small PIL images and tensors slowed prunelab's loop
    afterwards by a third (allocator state), which is not the loop's own cost."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_document_worker, args=(child, root, indices.tolist(), str(device)), daemon=True)
    proc.start()

    def run() -> float:
        parent.send(True)
        return parent.recv()

    return run


def sgemm_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate right now (median of `repeats` n×n products)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        (a @ b).sum().item()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def document_loop(root: str, indices: torch.Tensor, device: torch.device) -> Callable[[], None]:
    from torchvision import datasets, transforms

    ds = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, indices.tolist()),
                                         batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(),
                          nn.Linear(128, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def epoch() -> None:
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return epoch


def prunelab_loop(model: nn.Module, train, settings) -> Callable[[], None]:  # noqa: ANN001
    opt = make_optimizer(model, settings)
    g = torch.Generator().manual_seed(0)

    def epoch() -> None:
        train_epoch(model, train, opt, settings, g)  # returns a float: syncs the device

    return epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-document", action="store_true", help="only prunelab's loops")
    args = ap.parse_args()
    cfg = load_config(args.params)
    device = torch.device(args.device)
    settings = train_settings(cfg)
    train, _ = load_train_val(cfg.data.root, cfg.data.val_size, cfg.data.split_seed)
    # The training split's indices in the 60k file, for the document loop's Subset.
    order = torch.randperm(60000, generator=torch.Generator().manual_seed(cfg.data.split_seed))
    train_idx = order[cfg.data.val_size:]
    train = train.to(device)

    torch.manual_seed(0)
    plain = build_model("mlp").to(device)
    masked = build_model("mlp").to(device)
    masked.load_state_dict(plain.state_dict())
    scores = magnitude_scores(masked)
    names = prunable_names(masked, prune_output_layer=False)
    apply_masks(masked, select({k: scores[k] for k in names}, sparsity=0.9, scope="global"))

    loops = {}
    if not args.skip_document:
        loops["document loop (DataLoader + ToTensor)"] = in_own_process(cfg.data.root,
                                                                        train_idx, device)
    loops["prunelab train_epoch (in-memory)"] = timed(prunelab_loop(plain, train, settings))
    loops["prunelab fine-tuning epoch, 90% masked"] = timed(prunelab_loop(masked, train,
                                                                          settings))
    peak_before = sgemm_gflops(device)
    rows = list(interleaved_medians(loops, args.repeats).items())
    peak = (peak_before + sgemm_gflops(device)) / 2
    # Forward, input-gradient-free backward and weight gradient: 3 matmuls of 2·in·out
    # FLOPs per image and layer (the first layer's input needs no gradient: 2 there).
    macs = 784 * 128 + 128 * 10
    floor = len(train) * 2 * (3 * macs - 784 * 128) / (peak * 1e9)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {gpu or 'cpu'}; {len(train)} images/epoch, "
          f"batch {settings.batch_size}; median of {args.repeats} interleaved rounds\n")
    print(f"sgemm rate now (2048², before/after, mean): {peak:.0f} GFLOP/s, which puts an "
          f"epoch's matmuls at {floor:.2f} s\n")
    print("| loop | s/epoch | images/s |")
    print("|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {len(train) / sec:,.0f} |")
    by_name = dict(rows)
    plain_s = by_name["prunelab train_epoch (in-memory)"]
    if not args.skip_document:
        doc_s = by_name["document loop (DataLoader + ToTensor)"]
        print(f"\nspeed-up over the document loop: {doc_s / plain_s:.1f}x")
    print(f"masked fine-tuning epoch / plain epoch: "
          f"{by_name['prunelab fine-tuning epoch, 90% masked'] / plain_s:.2f}x")


if __name__ == "__main__":
    main()
