"""``rtpipe serve``: the runtime as a long-lived service (see ``service.Service``)."""

from pipeline.service.service import Service, ServiceConfig, StreamNotFound
from pipeline.service.streams import StreamSpec

__all__ = ["Service", "ServiceConfig", "StreamNotFound", "StreamSpec"]
