"""The studies: the search that picks each method's sparsity on validation, the sweep of
the comparison, the controls beside it, and the records they hand on."""
