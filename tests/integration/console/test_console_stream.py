"""The live stream across replicas: a console with its own engine sees the gRPC server's check-ins.

The console here shares nothing in memory with the gRPC server (its own engine, context and event
bell), as a second replica on another host would; its counts match `platform-server status`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from platform_server.bootstrap import Platform
from platform_server.console.app import ConsoleSettings
from platform_server.db.engine import make_engine, make_session_factory
from platform_server.services import accounts, keyring, statistics
from platform_server.services.context import ServiceContext
from tests.integration.console.support import Browserless, add_person, start_console, stream_lines
from tests.integration.platform_server.rpc_helpers import complete_request, identify_request
from tests.support.platform import start, stop
from tests.unit.platform_server.support import TEST_KEY, make_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.integration.console.support import ConsoleServer
    from tests.support.platform import Running

CLI = Path(sys.executable).with_name("platform-server")


@pytest.fixture
def replica(db_url: str) -> Iterator[tuple[Running, ConsoleServer]]:
    running = start(db_url, experts=6, rooms=6, bands=6)
    engine = make_engine(db_url, pool_size=5)
    keyring.open_keys(engine, TEST_KEY)  # what bootstrap does: the audit chain's key for this engine
    ctx = ServiceContext(data_key=TEST_KEY, rules=running.seeded.ctx.rules, face_verifier=None, clock=running.clock)
    other = Platform(running.platform.config, engine, make_session_factory(engine), ctx)
    add_person(other, "wang.viewer", accounts.Role.VIEWER)
    console = start_console(other, ConsoleSettings(poll_interval_s=0.05, counts_every_s=30))
    yield running, console
    console.stop()
    engine.dispose()
    stop(running)


def read_stream(url: str, cookie: str, into: queue.Queue[tuple[str, dict[str, Any]]]) -> None:
    kind = ""
    with contextlib.suppress(OSError, http.client.HTTPException):  # the console stops at the test's end
        for line in stream_lines(url, cookie, limit=10_000):
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                into.put((kind, json.loads(line.removeprefix("data: "))))


def next_of(events: queue.Queue[tuple[str, dict[str, Any]]], kind: str) -> dict[str, Any]:
    while True:
        got_kind, data = events.get(timeout=60)
        if got_kind == kind:
            return data


def test_a_replica_streams_every_check_in_and_its_counts_match_status(
    replica: tuple[Running, ConsoleServer], db_url: str
) -> None:
    running, console = replica
    s = running.seeded
    client = Browserless(console.url)
    assert client.login("wang.viewer").status == 303
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    url = f"{console.url}/batches/{s.batch_code}/stream?after=0"
    threading.Thread(target=read_stream, args=(url, client.session, events), daemon=True).start()
    for i in range(4):
        token = running.kiosk.IdentifyExpert(identify_request(f"K{i + 1}", s.batch_code, s.ids[i]))
        done = running.kiosk.CompleteCheckIn(complete_request(f"K{i + 1}", token.identification_token, s.bands[i][0]))
        event = next_of(events, "checkin")
        assert (event["kind"], event["check_in_id"]) == ("CHECKED_IN", done.check_in.check_in_id)
        assert s.ids[i] not in json.dumps(event)  # masked only
        counts = next_of(events, "counts")
        now = statistics.batch_statistics(running.platform.new_uow(), s.batch_code)
        assert (counts["invited"], counts["arrived"], counts["missing"]) == (now.invited, now.arrived, now.missing)
        assert counts["arrived"] == i + 1
        assert sum(n for _hour, n in counts["per_hour"]) == i + 1
    refused = running.kiosk.IdentifyExpert(identify_request("K1", s.batch_code, make_id(777)))
    assert refused.refusal.reason
    event = next_of(events, "checkin")
    assert event["kind"] == "REFUSED"
    assert event["reason"] == "NOT_INVITED"
    assert " / " in event["reason_text"]

    env = {**os.environ, "PLATFORM_DB_URL": db_url, "PLATFORM_DATA_KEY": "test-only data key, never used in production"}
    answer = subprocess.run(
        [str(CLI), "status", "--batch", s.batch_code, "--json"], capture_output=True, text=True, env=env, check=True
    )
    status = json.loads(answer.stdout)
    counts = next_of(events, "counts")
    for key in ("invited", "arrived", "missing", "annulled", "needs_staff", "rooms_left", "bands_left"):
        assert counts[key] == status[key], key
