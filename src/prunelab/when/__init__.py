"""When to prune: at initialisation (SNIP, GraSP, SynFlow), after training (the study's
`prune/`), and lottery tickets (iterative magnitude pruning with rewinding), with the
sanity checks that doubt pruning at initialisation (Frankle et al. 2021).

Library pieces only (issue 38): no stage runs them yet, so they are in no study's key.
"""
