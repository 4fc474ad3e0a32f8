"""Training engine: optimiser, schedule, losses, checkpoints, the run directory."""
