"""Prometheus metrics of one server (its own CollectorRegistry, so several apps can live in one process).

Request-level series are updated as requests end; engine-level ones (memory
planned and used per adapter, device losses and recoveries, queue depth) are
read from the engine at scrape time, so they are never stale and the server
keeps no copy of the engine's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from wgllm.api.generation import Job, by_adapter, device_losses, recoveries

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _EngineCollector:
    """Gauges and counters read from the engine when /metrics is scraped."""

    def __init__(self, owner: Any):
        self._owner = owner  # the AsyncEngine

    def describe(self) -> list:
        return []  # collected lazily: the engine may have no model loaded at registration

    def collect(self) -> Iterator[Metric]:
        engine = self._owner.engine
        planned = GaugeMetricFamily("wgllm_memory_planned_bytes",
                                    "Device memory the plan estimates for the loaded model", labels=["adapter"])
        budget = GaugeMetricFamily("wgllm_memory_budget_bytes",
                                   "Device memory budget of the adapter the model runs on", labels=["adapter"])
        used = GaugeMetricFamily("wgllm_memory_used_bytes",
                                 "Device memory held in buffers now (wgllm's own accounting)", labels=["adapter"])
        busy = CounterMetricFamily("wgllm_adapter_busy_seconds", "Seconds the host spent on each adapter's part of "
                                   "the model (submitting its work, waiting for its read-backs)", labels=["adapter"])
        parts = by_adapter(engine) if getattr(engine, "loaded", True) else []
        for p in parts:  # one per adapter the model is placed on (several when it is split)
            planned.add_metric([p["adapter"]], float(p["planned"]))
            budget.add_metric([p["adapter"]], float(p["budget"]))
            used.add_metric([p["adapter"]], float(p["allocated"]))
            busy.add_metric([p["adapter"]], float(p["busy_s"]))
        yield planned
        yield budget
        yield used
        yield busy
        yield CounterMetricFamily("wgllm_device_losses", "GPU failures detected (device lost, hung, out of memory)",
                                  value=device_losses(engine))
        yield CounterMetricFamily("wgllm_recoveries", "GPU failures recovered from without losing the conversation",
                                  value=recoveries(engine))
        yield CounterMetricFamily("wgllm_worker_restarts", "GPU worker processes started again after one died "
                                  "(a native crash, a kill, a hang)", value=int(getattr(engine, "restarts", 0) or 0))
        yield GaugeMetricFamily("wgllm_queue_depth", "Requests queued or running on the engine",
                                value=self._owner.pending)


class Metrics:
    """The server's metrics; `render()` is the /metrics body."""

    def __init__(self, owner: Any):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("wgllm_requests", "HTTP API requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.cancelled = Counter("wgllm_requests_cancelled", "Generations stopped because the client went away",
                                 registry=r)
        self.prompt_tokens = Counter("wgllm_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("wgllm_completion_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram("wgllm_time_to_first_token_seconds", "Time from a request's start on the engine to "
                              "its first token", buckets=_TTFT_BUCKETS, registry=r)
        self.prefill = Gauge("wgllm_prefill_tokens_per_second", "Prefill speed of the last request", registry=r)
        self.decode = Gauge("wgllm_decode_tokens_per_second", "Decode speed of the last request", registry=r)
        r.register(_EngineCollector(owner))

    def observe(self, job: Job) -> None:
        """Count a finished job's tokens and speeds (no-op when it never ran)."""
        u = job.usage
        if u is None:
            return
        self.prompt_tokens.inc(u.prompt_tokens)
        self.completion_tokens.inc(u.completion_tokens)
        if u.completion_tokens:
            self.ttft.observe(u.extra.time_to_first_token_s)
            self.prefill.set(u.extra.prefill_tokens_per_s)
            self.decode.set(u.extra.decode_tokens_per_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
