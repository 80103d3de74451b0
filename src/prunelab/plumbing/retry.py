"""Riding out a lost store connection: retry with backoff for a stated time, then give up
in one line.

A database restart, a failover, a pooler's idle timeout or a network blip drops the
connections a long-running client holds. SQLAlchemy's `pool_pre_ping` replaces a dead
connection *before* it is handed out, but one that drops *during* an operation fails that
operation (and Optuna reports it as "invalid data in the commit"). So each store operation
is retried here while its failure is a lost connection, for `retry_s` seconds, with one
line per retry; a write whose commit may have landed is read back (`landed`) before it is
repeated. Past `retry_s`, `StoreLost` says which store (password hidden) and that what is
done is kept.
"""

from __future__ import annotations

import errno
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from prunelab.errors import PrunelabError

T = TypeVar("T")
FIRST_S, LONGEST_S = 1.0, 16.0  # backoff: 1, 2, 4, ... s, never more than 16 s apart
# What a lost file system says (NFS, a full or unmounted disk is not transient: not here).
_LOST_FILE = {errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.ENOLCK}
_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


class StoreLost(PrunelabError, RuntimeError):
    """A store stayed unreachable for longer than its retry time."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it was raised from (or while handling), and so on."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, says a store's connection was lost
    (or could not be made), rather than that a request was wrong."""
    import sqlalchemy.exc as sa

    for e in _chain(exc):
        if isinstance(e, StoreLost):  # an inner call already retried for its time
            return False
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        # OperationalError: "server closed the connection", "terminating connection due to
        # administrator command", "could not connect", SQLite's "database is locked";
        # PendingRollbackError: a session whose connection died mid-transaction.
        if isinstance(e, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError,
                          sa.PendingRollbackError, ConnectionError, TimeoutError)):
            return True
        if isinstance(e, OSError) and e.errno in _LOST_FILE:
            return True
        if type(e).__module__.startswith("requests") and type(e).__name__ in {
                "ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout"}:
            return True  # an MLflow tracking server that does not answer
    return False


def lost_in(exc: BaseException) -> StoreLost | None:
    """The `StoreLost` that `exc` was raised from or while handling, if any: a library's
    clean-up code that calls the store again can bury it under an error of its own."""
    return next((e for e in _chain(exc) if isinstance(e, StoreLost)), None)


def delays(retry_s: float) -> list[float]:
    """The waits before each retry: doubling from 1 s (at most 16 s) until `retry_s`."""
    out: list[float] = []
    while sum(out) < retry_s:
        out.append(min(FIRST_S * 2 ** len(out), LONGEST_S, retry_s - sum(out)))
    return out


def retrying(call: Callable[[], T], store: str, retry_s: float,
             landed: Callable[[], tuple[bool, T | None]] | None = None,
             reset: Callable[[], None] | None = None) -> T:
    """`call()`, again after each lost connection until `retry_s` has passed. `store`
    names it in messages ("the study storage at postgresql://u@host/db", no password).
    Before a repeat, `reset()` drops what the lost connection left (a session to roll
    back), and `landed()` says whether the failed attempt's write took effect after all
    (and what it returned), so that it is not done twice."""
    waits = delays(retry_s)
    for attempt in range(len(waits) + 1):
        try:
            if attempt and landed is not None:
                done, value = landed()
                if done:
                    return value  # type: ignore[return-value]
            return call()
        except Exception as exc:
            if not connection_lost(exc):
                # An inner call of this one gave up (MLflow's create_run reads the
                # experiment through the same retried store) and the library wrapped that
                # in an error of its own (MlflowException): say the store is lost, in one
                # line, not the wrapper's traceback.
                if (lost := lost_in(exc)) is not None and lost is not exc:
                    raise StoreLost(str(lost)) from exc
                raise
            if attempt == len(waits):
                raise StoreLost(f"lost {store} for {retry_s:g} s: {_reason(exc)}") from exc
            wait = waits[attempt]
            print(f"lost {store} ({_reason(exc)}); retrying in {wait:g} s, "
                  f"{attempt + 1} of {len(waits)}", file=sys.stderr, flush=True)
            time.sleep(wait)
            if reset is not None:
                try:
                    reset()
                except Exception:  # noqa: BLE001 (the next attempt tells whether it is back)
                    pass
    raise AssertionError("unreachable")


def _reason(exc: BaseException) -> str:
    """The first line of the deepest error: the driver's words, not the wrapper's."""
    e = exc
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    line = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return _PASSWORD.sub(r"\1***@", line)  # a driver may quote the URL it was given
