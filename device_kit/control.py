"""The control channel's client: switch a running simulator's faults from another process (``sim-ctl``).

Requests and replies are JSON objects, one per line: ``{"op": "inject", "fault": "paper_out",
"params": {"after_lines": 3}}``, ``{"op": "clear"}``, ``{"op": "faults"}``, ``{"op": "status"}``; a
reply has ``"ok"`` and either the simulator's state or ``"error"``.
"""

from __future__ import annotations

import json
import socket
from typing import Any


class ControlError(RuntimeError):
    """The control channel did not answer, or refused the request (the message says why)."""


class ControlClient:
    """A short-lived connection to a simulator's control channel."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply; ControlError when refused or unreachable."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as conn:
                conn.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except OSError as err:
            raise ControlError(f"simulator control does not answer at {self.host}:{self.port}: {err}") from err
        try:
            answer = json.loads(reply)
        except ValueError as err:
            raise ControlError(f"simulator control sent no JSON reply: {reply[:80]!r}") from err
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise ControlError(str(error))
        return answer

    def inject(self, fault: str, **params: Any) -> dict[str, Any]:
        """Switch a fault on."""
        return self.request("inject", fault=fault, params=params)

    def clear(self, fault: str | None = None) -> dict[str, Any]:
        """Switch one fault or all off."""
        return self.request("clear", fault=fault)

    def faults(self) -> dict[str, Any]:
        """The faults the simulator offers, with help and parameters."""
        return dict(self.request("faults")["faults"])

    def status(self) -> dict[str, Any]:
        """Active faults and the simulator's own state."""
        return self.request("status")
