"""Pruning one model: its settings from params (`settings`), the procedure one-shot or in
rounds (`procedure`), the two granularities (`granularity`), masks, surgery and pruning
during fine-tuning (`gradual`)."""
