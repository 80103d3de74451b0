"""The search's Optuna studies, rebuilt from their committed trials for optuna-dashboard.

    .venv/bin/python scripts/search_dashboard.py            # -> studies/search-dashboard.log
    optuna-dashboard studies/search-dashboard.log           # http://127.0.0.1:8080

A fresh clone skips the search (its committed choices are current), so its Optuna journal
holds no search study; `search/trials/<method>-<granularity>.json` (written by the search
stage, time-free) has each study's trials: this writes them into a journal of their own,
replacing the studies of the same names there. The sweep's study is in the project's own
journal, `studies/optuna-journal.log`, once `dvc repro` has run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from prunelab.plumbing.study_export import rebuild


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=Path, default=Path("search/trials"),
                    help="folder of the exported studies (default: %(default)s)")
    ap.add_argument("--journal", type=Path, default=Path("studies/search-dashboard.log"),
                    help="the journal to write (default: %(default)s)")
    args = ap.parse_args()
    files = sorted(args.trials.glob("*.json"))
    if not files:
        print(f"search_dashboard: no exported studies in {args.trials}; run `dvc repro "
              "search` to write them", file=sys.stderr)
        return 2
    args.journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(args.journal)))
    names = rebuild((json.loads(f.read_text()) for f in files), storage)
    print(f"{len(names)} studies in {args.journal}; look at them with:\n"
          f"  optuna-dashboard {args.journal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
