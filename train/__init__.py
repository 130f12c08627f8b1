"""Training scripts (`accelerate launch train/<model>.py`) and their shared data loading."""
