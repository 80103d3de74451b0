"""Thin stage commands: each wires library functions to files, MLflow and Optuna."""
