"""Prometheus metrics, one registry per app so several apps (tests) never share counters.

With several serving processes (SMS_WORKERS > 1) prometheus_client keeps the values in files in
PROMETHEUS_MULTIPROC_DIR and /metrics sums them across processes (app/processes.py); each gauge
says how: queue depths add up, a version is ready only when it is ready in every process.

Label children are cached: `labels()` looks up a dict under a lock, which on the hot path costs
more than the observation itself.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sms_requests_total",
            "HTTP requests answered.",
            ["route", "model", "version", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sms_request_duration_seconds",
            "Time from the first byte of the request to the end of the response.",
            ["route", "model", "version", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "sms_queue_wait_seconds",
            "Time an item waited in its model's queue before its batch started.",
            ["model", "version"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "sms_batch_size",
            "Items per batch run.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "sms_batch_compute_seconds",
            "Worker time per batch: decoding, preprocessing and the ONNX Runtime run.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "sms_queue_depth",
            "Items waiting in the model's queue.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejections = Counter(
            "sms_rejections_total",
            "Items not computed: queue_full (503), deadline (504), disconnected (client gone).",
            ["model", "version", "reason"],
            registry=r,
        )
        self.batch_failures = Counter(
            "sms_batch_failures_total",
            "Batches that raised (500 for their items).",
            ["model", "version"],
            registry=r,
        )
        self.model_ready = Gauge(
            "sms_model_ready",
            "1 while the version is loaded, warm and serving, 0 otherwise.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_provider = Gauge(
            "sms_model_execution_provider",
            "1 for each ONNX Runtime execution provider active in the model's session.",
            ["model", "version", "provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_loads = Counter(
            "sms_model_loads_total",
            "Version loads by outcome (loaded, failed), at start-up and while serving.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_unloads = Counter(
            "sms_model_unloads_total",
            "Versions unloaded (replaced by a reload, or unloaded), after draining.",
            ["model"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}

    def observe_request(
        self, route: str, model: str, version: str, status: int, seconds: float
    ) -> None:
        """Count one answered request. Every label comes from the server: the route template
        (or "unmatched"), a model and version the registry found (or ""), the status."""
        key = (route, model, version, str(status))
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(*key))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class BatcherMetrics:
    """The per-model children a batcher writes to, bound once."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self.queue_wait = metrics.queue_wait.labels(model, version)
        self.batch_size = metrics.batch_size.labels(model, version)
        self.compute = metrics.compute.labels(model, version)
        self.queue_depth = metrics.queue_depth.labels(model, version)
        self.queue_full = metrics.rejections.labels(model, version, "queue_full")
        self.deadline = metrics.rejections.labels(model, version, "deadline")
        self.disconnected = metrics.rejections.labels(model, version, "disconnected")
        self.failures = metrics.batch_failures.labels(model, version)
