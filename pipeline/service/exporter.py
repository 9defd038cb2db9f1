"""``GET /metrics``: the service in Prometheus' text format (prometheus_client).

Read from the streams and the outbox when scraped (nothing is counted twice), except the
end-to-end latency, a histogram every frame adds to. Per stream (label ``stream``, its name):
up, reconnecting, frames, fps, drops, reconnects, latency, per-stage mean time, queue depth;
per destination (label ``destination``): events published, failed tries, spooled, dropped.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pipeline.service.service import Service

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceCollector:
    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        streams = self.service.list()
        running = [(s, self.service.streams.get(s["id"])) for s in streams]
        gauges = {
            "up": GaugeMetricFamily("rtpipe_stream_up", "1 while the stream delivers frames", labels=["stream"]),
            "reconnecting": GaugeMetricFamily("rtpipe_stream_reconnecting", "1 while the stream is down and retried", labels=["stream"]),
            "fps": GaugeMetricFamily("rtpipe_stream_fps", "frames per second out, over the last 30 frames", labels=["stream"]),
        }
        frames = CounterMetricFamily("rtpipe_stream_frames", "frames out of the pipeline", labels=["stream"])
        drops = CounterMetricFamily("rtpipe_stream_dropped_frames", "frames dropped to keep up with a live stream", labels=["stream"])
        reconnects = CounterMetricFamily("rtpipe_stream_reconnects", "outages the stream came back from", labels=["stream"])
        stage = GaugeMetricFamily("rtpipe_stage_mean_ms", "mean time of a pipeline stage per call", labels=["stream", "stage"])
        depth = GaugeMetricFamily("rtpipe_queue_mean_depth", "mean depth of a queue in front of a stage", labels=["stream", "queue"])
        pushed = CounterMetricFamily("rtpipe_restream_frames", "frames re-streamed", labels=["stream"])
        unpushed = CounterMetricFamily("rtpipe_restream_dropped_frames", "frames not re-streamed (the server down)", labels=["stream"])
        for s, stream in running:
            name = s["name"]
            gauges["up"].add_metric([name], 1.0 if s["state"] == "up" else 0.0)
            gauges["reconnecting"].add_metric([name], 1.0 if s["state"] == "reconnecting" else 0.0)
            gauges["fps"].add_metric([name], s["fps"] or 0.0)
            frames.add_metric([name], s["frames"])
            drops.add_metric([name], s["dropped"])
            reconnects.add_metric([name], s["reconnects"])
            if s["restream"] is not None:
                pushed.add_metric([name], s["restream"]["sent"])
                unpushed.add_metric([name], s["restream"]["dropped"])
            pipeline = stream.session.pipeline if stream is not None and stream.session is not None else None
            if pipeline is not None:  # (means only: percentiles of every stage at each scrape would cost more than they say)
                for k, v in list(pipeline.metrics.stages.items()):
                    stage.add_metric([name, k], v.total_ms / v.count if v.count else 0.0)
                for k, q in list(pipeline.metrics.queues.items()):
                    depth.add_metric([name, k], q.stats()["mean_depth"])
        yield from gauges.values()
        yield from (frames, drops, reconnects, stage, depth, pushed, unpushed)
        published = CounterMetricFamily("rtpipe_events_published", "events the destination acknowledged", labels=["destination"])
        failed = CounterMetricFamily("rtpipe_events_failed_tries", "deliveries that failed (each is retried)", labels=["destination"])
        spooled = GaugeMetricFamily("rtpipe_events_spooled", "events waiting on disk for the destination", labels=["destination"])
        dropped = CounterMetricFamily("rtpipe_events_dropped", "events a full spool refused", labels=["destination"])
        for d in self.service.outbox.stats():
            published.add_metric([d["destination"]], d["published"])
            failed.add_metric([d["destination"]], d["failed"])
            spooled.add_metric([d["destination"]], d["spooled"])
            dropped.add_metric([d["destination"]], d["dropped"])
        yield from (published, failed, spooled, dropped)
        yield CounterMetricFamily("rtpipe_events", "events made by the streams", value=self.service.events)


class Exporter:
    """The service's registry: the collector above and the latency histogram fed per frame."""

    def __init__(self, service: Service):
        self.registry = CollectorRegistry()
        self.registry.register(ServiceCollector(service))
        self.latency = Histogram("rtpipe_stream_latency_seconds", "capture to written, per frame", ["stream"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        service.on_latency = lambda name, seconds: self.latency.labels(name).observe(seconds)
        service.on_removed = self._forget

    def _forget(self, name: str) -> None:
        """A removed stream's histogram goes with it (names that come and go would otherwise pile up)."""
        try:
            self.latency.remove(name)
        except KeyError:
            pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
