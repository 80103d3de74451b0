"""Statistics over the sweep's points: paired tests (`stats`), the cells' verdicts, the
questions' contrasts, the published tables' check (`papers`)."""
