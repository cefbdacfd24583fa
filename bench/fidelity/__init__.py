"""(g) Multi-fidelity: early stopping on real training curves (tabulated), side by side with Optuna's pruners."""
