"""PyTorch models, the training loop and scoring. Depends on torch and numpy only."""
