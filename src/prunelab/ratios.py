"""The one rule from a compression ratio to the fraction cut: r× keeps 1/r, cuts 1 − 1/r
(of the prunable weights, or of the hidden units), wherever a ratio is turned into a cut
(the sweep's points, the oracle's sets)."""

from __future__ import annotations


def ratio_sparsity(ratio: float) -> float:
    """Fraction to cut for a compression ratio: 2× → 0.5, 32× → 0.96875."""
    if ratio <= 1:
        raise ValueError(f"a compression ratio must exceed 1, got {ratio}")
    return 1.0 - 1.0 / ratio
