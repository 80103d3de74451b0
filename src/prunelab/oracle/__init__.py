"""The oracle: the ground truth of each baseline (`truth`), every criterion's scores
against single removals (`single`) and whole sets (`unit_sets`, `weight_sets`)."""
