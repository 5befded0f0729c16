"""Embeddings: metric-learning losses, retrieval and verification metrics, nearest-neighbour search.

Above `cnnkit.train` (it trains through the same Trainer), beside `cnnkit.explain`.
"""

from cnnkit.embeddings.metrics import retrieval_metrics
from cnnkit.embeddings.verification import verification_metrics

__all__ = ["retrieval_metrics", "verification_metrics"]
