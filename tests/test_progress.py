"""Progress lines: whole lines, at most every 10 s and after the last item, with an
estimate of what is left at the pace so far."""

from __future__ import annotations

from prunelab.plumbing.progress import duration, progress


def test_lines_come_at_most_every_interval_and_at_the_end() -> None:
    times = iter([0.0, 3.0, 9.0, 12.0, 13.0, 25.0, 26.0])  # start, then after each item
    lines: list[str] = []
    items = list(progress(range(6), 6, "sweep", "points", every_s=10.0,
                          clock=lambda: next(times), say=lines.append))
    assert items == list(range(6))
    assert lines == [
        "sweep: 3 of 6 points, 12 s elapsed, about 12 s left",  # 12 s after the start
        "sweep: 5 of 6 points, 25 s elapsed, about 5 s left",  # 13 s after the last line
        "sweep: 6 of 6 points, 26 s elapsed",  # the last, whenever it comes
    ]


def test_durations_read_as_a_person_would_say_them() -> None:
    assert [duration(s) for s in (0.4, 59.6, 185, 3725)] == ["0 s", "1 min 0 s",
                                                             "3 min 5 s", "1 h 2 min"]
