"""Training: the trainer, checkpoints, transfer learning, distributed runs, and the demo."""
