"""Training infrastructure shared by search and training: checkpoints, history, losses."""
