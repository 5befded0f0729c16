"""A from-scratch NumPy CNN engine: each op's forward beside its backward, checked against PyTorch.

Imports nothing else of cnnkit and no torch.
"""
