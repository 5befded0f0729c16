"""Prometheus metrics of one app, in its own CollectorRegistry (two apps in a process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    """Requests by endpoint and status, request latency, queue time and batch size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cnnkit_requests", "HTTP requests by endpoint and status",
                                ("endpoint", "status"), registry=self.registry)
        self.latency = Histogram("cnnkit_request_latency_seconds", "Time from request to response, by endpoint",
                                 ("endpoint",), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.queue_time = Histogram("cnnkit_queue_seconds", "Time a sample waited in the batching queue",
                                    buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("cnnkit_batch_size", "Samples per forward pass",
                                    buckets=_BATCH_BUCKETS, registry=self.registry)

    def observe_batch(self, size: int, queue_seconds: list[float]) -> None:
        self.batch_size.observe(size)
        for seconds in queue_seconds:
            self.queue_time.observe(seconds)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
