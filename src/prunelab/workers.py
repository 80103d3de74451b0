"""Worker processes on one machine: how many, how many threads each, and a pool that
builds each worker's state (data, baselines) once and then runs tasks in it.

Small models gain little from a second torch thread and lose most of it when another
process wants the core (BENCHMARKS.md), so parallelism comes from processes, each on
`threads` threads (params.yaml `compute`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import tqdm

from prunelab.config import Config

T = TypeVar("T")
R = TypeVar("R")
Imap = Callable[[Callable[[Any, T], R], list[T]], Iterator[R]]


def worker_count(cfg: Config) -> int:
    """compute.workers, or the cores this process may use divided by compute.threads."""
    if cfg.compute.workers != "auto":
        return int(cfg.compute.workers)
    return max(1, len(os.sched_getaffinity(0)) // cfg.compute.threads)


_state: Any = None


def _die_with_parent() -> None:
    """A worker must not outlive its stage: killed, the stage's trial must stay unfinished
    (for the heartbeat or the next run to retry), not be finished by an orphan. Linux only
    (prctl PR_SET_PDEATHSIG); elsewhere a worker ends when it next asks for a task."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _init(threads: int, make_state: Callable[..., Any], args: tuple[Any, ...],
          child: bool = True) -> None:
    global _state
    if child:
        _die_with_parent()
        # tqdm (which Optuna imports) makes a multiprocessing lock at its first bar; a
        # worker that is terminated (its stage stopped) leaves it, and Python's resource
        # tracker warns about it after the stage's own last line. A thread lock will do.
        tqdm.tqdm.set_lock(threading.RLock())
    torch.set_num_threads(threads)
    _state = make_state(*args)


def _call(job: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    task, item = job
    return task(_state, item)


@contextmanager
def worker_pool(make_state: Callable[..., Any], args: tuple[Any, ...], workers: int,
                threads: int) -> Iterator[Imap[Any, Any]]:
    """`imap(task, items)` yields `task(state, item)` for every item, in completion order,
    computed in `workers` spawned processes whose `state = make_state(*args)` is built
    once each. With one worker everything runs in this process (no start-up cost)."""
    if workers <= 1:
        _init(threads, make_state, args, child=False)
        yield lambda task, items: (task(_state, item) for item in items)
        return
    # spawn, not fork: a forked child would inherit torch's thread pool and MLflow's and
    # SQLAlchemy's open connections.
    with multiprocessing.get_context("spawn").Pool(workers, _init,
                                                   (threads, make_state, args)) as pool:
        yield lambda task, items: pool.imap_unordered(_call, [(task, i) for i in items])
        # Let the workers exit on their own (the `with` would kill them): killed, they
        # leave their semaphores (tqdm's lock) for Python's resource tracker to warn about.
        pool.close()
        pool.join()
