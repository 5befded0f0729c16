"""Embeddings: metric-learning losses, retrieval and verification metrics, nearest-neighbour search.

Above `cnnkit.train` (it trains through the same Trainer), beside `cnnkit.explain`.
"""
