"""Plumbing: files, progress lines, tracking, stores and queues. None of it can change a
number, so the keys of the work (`codedeps.unit_digest`) never hash it; `tests/test_layers.py`
holds the rule that lets them: a plumbing module imports, at run time, only other plumbing,
`errors` and `config`."""
