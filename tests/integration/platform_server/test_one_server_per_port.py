"""A second platform server on a port already served fails to start; it never shares the port silently.

gRPC sets SO_REUSEPORT by default, with which the second bind succeeds and the kernel splits new
connections between the two servers: kiosks would reach whichever, a test's fake platform could be
answered by another test's real one. The platform turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from expertcheckin.v1 import diagnostics_pb2

from platform_server.config import DatabaseSection, PlatformConfig, SecuritySection
from platform_server.errors import ConfigError
from platform_server.server import create_server
from tests.support.platform import start, stop

if TYPE_CHECKING:
    from pathlib import Path


def test_a_second_server_on_a_served_port_refuses_to_start_and_the_first_keeps_answering(tmp_path: Path) -> None:
    first = start(f"sqlite:///{tmp_path / 'first.db'}")
    try:
        config = PlatformConfig(
            database=DatabaseSection(url=f"sqlite:///{tmp_path / 'second.db'}"),
            security=SecuritySection(insecure_kiosks=True),
        )
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            create_server(config, first.platform, listen=f"127.0.0.1:{first.port}")
        for n in range(20):  # new connections too: every one reaches the first server
            answer = first.diagnostics.Echo(diagnostics_pb2.EchoRequest(message=f"ping {n}"), timeout=30)
            assert answer.message == f"ping {n}"
    finally:
        stop(first)
