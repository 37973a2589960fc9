"""One simulator server lifecycle: a TCP listener for ``socket://`` URLs and an optional control channel.

``start()`` binds and serves, ``stop()`` closes every connection and joins the threads, and the
context manager means exactly start-then-stop. A device's simulator subclasses ``SimulatorServer``
and writes only ``serve_connection`` (its side of the wire protocol) and its faults; the control
channel (JSON lines, see device_kit.control) switches those faults from another process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Self

from device_kit.faults import FaultError, FaultSet

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

_log = logging.getLogger("device_kit.server")


class SimulatorServer:
    """Base of every TCP simulator: lifecycle, accept loop, connection bookkeeping, control channel."""

    #: Thread-name prefix and log name, e.g. "printer-sim".
    name = "sim"
    #: The device's own control ops for the "unknown op" message, e.g. ", place, remove".
    control_ops_help = ""

    def __init__(
        self, faults: FaultSet, host: str = "127.0.0.1", port: int = 0, *, control_port: int | None = None
    ) -> None:
        self.faults_set = faults
        self._host, self._port = host, port
        self._control_port = control_port
        self._listener: socket.socket | None = None
        self._control: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._running = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind, listen and serve; returns self. Starting a running server is an error."""
        if self._running.is_set():
            raise RuntimeError(f"{self.name} simulator is already running on {self.url}")
        self._listener = socket.create_server((self._host, self._port))
        self._port = self._listener.getsockname()[1]
        if self._control_port is not None:
            self._control = socket.create_server((self._host, self._control_port))
            self._control_port = self._control.getsockname()[1]
        self._running.set()
        self._spawn(self._accept_loop, self._listener, self._serve_client, name=f"{self.name}-accept")
        if self._control is not None:
            self._spawn(self._accept_loop, self._control, self._serve_control, name=f"{self.name}-control")
        _log.info("%s simulator listening on %s", self.name, self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (a power-off); stopping twice is harmless."""
        self._running.clear()
        with self._clients_lock:
            clients = list(self._clients)
        for sock in (self._listener, self._control, *clients):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self._threads.clear()
        self._listener = self._control = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._running.is_set()

    @property
    def port(self) -> int:
        """The bound TCP port (after start)."""
        return self._port

    @property
    def url(self) -> str:
        """The pyserial URL a driver opens."""
        return f"socket://{self._host}:{self._port}"

    @property
    def control_address(self) -> tuple[str, int] | None:
        """Host and port of the control channel, if enabled."""
        return None if self._control_port is None else (self._host, self._control_port)

    # ------------------------------------------------------------ faults (the one interface)

    @property
    def faults(self) -> tuple[str, ...]:
        """Every fault name this simulator offers."""
        return self.faults_set.faults

    def inject(self, name: str, **params: Any) -> None:
        """Switch a named fault on (FaultError for an unknown name or parameter)."""
        self.faults_set.inject(name, **params)
        _log.info("%s fault on: %s %s", self.name, name, params or "")
        self.fault_changed(name)

    def clear(self, name: str | None = None) -> None:
        """Switch one fault (or all) off."""
        self.faults_set.clear(name)
        _log.info("%s fault off: %s", self.name, name or "all")
        self.fault_changed(name)

    def fault_changed(self, name: str | None) -> None:
        """Hook: a fault was switched (wake waiting threads, for example)."""

    # ------------------------------------------------------------ for subclasses

    def serve_connection(self, conn: socket.socket) -> None:
        """Serve one driver connection until it closes or the server stops (the device's behaviour)."""
        raise NotImplementedError

    def control_status(self) -> dict[str, Any]:
        """What ``sim-ctl status`` shows besides the active faults."""
        return {}

    def active_faults(self) -> dict[str, Any]:
        """The faults switched on, with their parameters (a device that counts firings shows what is left)."""
        return self.faults_set.snapshot()

    def control_action(self, op: str, request: dict[str, Any]) -> bool:
        """Hook: a device's own control op besides the fault ops (place a card, say); False if unknown."""
        _ = op, request
        return False

    # ------------------------------------------------------------ internals

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        while self._running.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._clients_lock:
                self._clients.add(conn)
            self._spawn(handler, conn, name=f"{self.name}-conn")

    def _serve_client(self, conn: socket.socket) -> None:
        try:
            self.serve_connection(conn)
        except OSError as err:
            _log.debug("%s connection ended: %s", self.name, err)
        finally:
            self._forget(conn)

    def _forget(self, conn: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _serve_control(self, conn: socket.socket) -> None:
        try:
            with conn.makefile("rwb") as stream:
                for line in stream:
                    reply = self.handle_control(line)
                    stream.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
                    stream.flush()
        except OSError as err:
            _log.debug("%s control connection ended: %s", self.name, err)
        finally:
            self._forget(conn)

    def handle_control(self, line: bytes) -> dict[str, Any]:
        """One control request (a JSON object) to its reply; never raises."""
        try:
            return self._control_op(json.loads(line))
        except (ValueError, TypeError, KeyError) as err:
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}

    def _control_op(self, request: object) -> dict[str, Any]:
        """Carry out one decoded control request."""
        if not isinstance(request, dict):
            raise TypeError("a control request is a JSON object")
        op = request.get("op")
        if op == "inject":
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise TypeError("'params' must be an object")
            self.inject(str(request["fault"]), **params)
        elif op == "clear":
            fault = request.get("fault")
            self.clear(None if fault is None else str(fault))
        elif op == "faults":
            specs = [self.faults_set.spec(n) for n in self.faults]
            return {"ok": True, "faults": {s.name: {"help": s.help, "params": dict(s.params)} for s in specs}}
        elif op != "status" and not self.control_action(str(op), request):
            raise FaultError(f"unknown op {op!r}; known: inject, clear, faults, status{self.control_ops_help}")
        return {"ok": True, "active": self.active_faults(), **self.control_status()}
