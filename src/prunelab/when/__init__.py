"""When to prune: at initialisation (SNIP, GraSP, SynFlow), after training (the study's
`prune/`), and lottery tickets (iterative magnitude pruning with rewinding), with the
sanity checks that doubt pruning at initialisation (Frankle et al. 2021).

Library pieces (issue 38): the scores (`at_init`), lottery tickets' rounds and rewind
(`lottery`), and one point of pruning at initialisation with its sanity variants
(`init_point`). No stage runs them yet, so they are in no study's key.
"""
