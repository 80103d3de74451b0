"""Where a long stage is: "sweep: 37 of 300 points, 1 min 10 s elapsed, about 8 min left".

One whole line per update, at most every `every_s` seconds and once at the end, so that a
log (DVC's output, CI's, a file) reads the same as a terminal. Not tqdm: off a terminal it
redraws one line with carriage returns, which a log shows as one run-on line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def duration(seconds: float) -> str:
    """12 s, 3 min 5 s, 1 h 2 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def progress(items: Iterable[T], total: int, what: str, unit: str, every_s: float = 10.0,
             clock: Callable[[], float] = time.monotonic,
             say: Callable[[str], None] = lambda line: print(line, flush=True)) -> Iterator[T]:
    """Yield `items`, saying after each one (at most every `every_s` s, and after the last)
    how many of `total` are done, the time since the first was asked for, and the time
    the rest should take at the pace so far."""
    start = last = clock()
    done = 0
    for item in items:
        yield item
        done += 1
        now = clock()
        if now - last >= every_s or done == total:
            last = now
            elapsed = now - start
            left = (f", about {duration(elapsed / done * (total - done))} left"
                    if done < total else "")
            say(f"{what}: {done} of {total} {unit}, {duration(elapsed)} elapsed{left}")
