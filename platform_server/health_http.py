"""A plain HTTP health endpoint beside the gRPC port, for load balancers that check over HTTP/1.

HAProxy and nginx cannot easily speak the gRPC health protocol in a check; `GET /health` answers
200 while the replica serves and 503 from the moment it starts draining (SIGTERM), so the balancer
stops sending it new calls before the gRPC server stops.
"""

from __future__ import annotations

import http.server
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


class HealthEndpoint:
    """`GET /health` on its own port and thread: 200 "serving" while serving, else 503; `GET /metrics` too."""

    def __init__(
        self, listen: str, *, serving: bool = True, metrics: Callable[[], tuple[bytes, str]] | None = None
    ) -> None:
        """Bind `host:port` (port 0: any free port, see .port); 503 until serving() unless `serving`.

        With `metrics` (body and content type, e.g. rpc_metrics.RpcMetrics.render) `GET /metrics`
        answers the Prometheus text, draining or not.
        """
        host, _, port = listen.rpartition(":")
        self._serving = threading.Event()
        if serving:
            self._serving.set()
        state = self._serving

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if metrics is not None and self.path.split("?")[0] == "/metrics":
                    body, content_type = metrics()
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                ok = state.is_set() and self.path.split("?")[0] == "/health"
                body = b"serving\n" if ok else b"not serving\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002
                return  # a check every second would flood the log

        self._server = _QuietServer((host or "127.0.0.1", int(port)), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        self._thread.start()

    def serving(self) -> None:
        """Answer 200 from now on (the gRPC server is taking calls)."""
        self._serving.set()

    def draining(self) -> None:
        """Answer 503 from now on."""
        self._serving.clear()

    def close(self) -> None:
        """Stop answering."""
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    """A checker that hangs up before reading the answer is not an error worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002  (the base's signature)
        """Log at debug level only."""
        log.debug("health check from %s ended early", client_address)
