"""Training loops, run folders and checkpoints."""
