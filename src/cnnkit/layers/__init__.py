"""PyTorch building blocks of CNNs, one concept per file."""
