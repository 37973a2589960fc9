"""`platform-server serve` as a real process: TOML config, TLS on a free port, health, SIGTERM, refusals."""

from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from expertcheckin.v1 import common_pb2, kiosk_pb2_grpc, organiser_pb2, organiser_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from platform_server.dev_certs import make_dev_certificates
from tests.integration.platform_server.rpc_helpers import identify_request
from tests.unit.platform_server.support import make_id

if TYPE_CHECKING:
    from collections.abc import Iterator

PLATFORM_SERVER = Path(sys.executable).with_name("platform-server")
GRACE_S = 6  # long enough that finishing well inside it shows the open stream did not hold it
START_DEADLINE_S = 60  # migrations on a fresh SQLite file and the imports of a cold interpreter
SERVING = re.compile(r"platform serving on \S+:(\d+) \(([^)]*)\)")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without anyone's PLATFORM_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env.update(extra)
    return env


class ServerProcess:
    """The CLI's serve command in its own process; its stderr lines are read by a thread into a queue."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env
        self.process = subprocess.Popen(
            [str(PLATFORM_SERVER), "--config", str(config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], deadline_s: float) -> re.Match[str]:
        """The first stderr line matching `pattern`, waiting at most `deadline_s` (no sleeping)."""
        match = self._read_until(pattern, deadline_s)
        if match is not None:
            return match
        if self.process.poll() is not None:
            pytest.fail(f"serve exited with {self.process.wait()} before {pattern.pattern!r}:\n" + self.log)
        pytest.fail(f"no {pattern.pattern!r} within {deadline_s} s:\n" + self.log)

    def stopped(self, deadline_s: float) -> int:
        """The exit code once the process ends; past the deadline, fail with its thread stacks and log."""
        try:
            return self.process.wait(timeout=deadline_s)  # waits on the process, no polling sleep
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # serve writes every thread's stack to stderr at once
            self._read_until(re.compile(r"^(Current thread|Thread) 0x"), 10)  # begun: the rest is in the pipe
            self.kill()
            pytest.fail(f"serve did not stop within {deadline_s} s; its log and thread stacks:\n{self.rest_of_log()}")

    def _read_until(self, pattern: re.Pattern[str], deadline_s: float) -> re.Match[str] | None:
        """Stderr lines into the log until one matches `pattern`; None at the deadline or the end of output."""
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)  # the end stays visible to rest_of_log and later reads
                return None
            self.seen.append(line)
            if match := pattern.search(line):
                return match
        return None

    def rest_of_log(self) -> str:
        """Everything the process wrote after it ended."""
        self._reader.join(timeout=10)
        while not self.lines.empty():
            line = self.lines.get_nowait()
            if line is not None:
                self.seen.append(line)
        return self.log

    @property
    def log(self) -> str:
        return "\n".join(self.seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    make_dev_certificates(folder, ["K1"], ["localhost", "127.0.0.1"])
    return folder


def write_config(tmp_path: Path, certs: Path | None, *, data_key: str) -> Path:
    tls = (
        f'tls_cert = "{certs / "server.pem"}"\ntls_key = "{certs / "server.key"}"\nclient_ca = "{certs / "ca.pem"}"\n'
        if certs
        else ""
    )
    key = f'data_key = "{data_key}"\n' if data_key else ""
    config = tmp_path / "platform.toml"
    config.write_text(
        "[server]\n"
        'listen = "127.0.0.1:0"\n'
        f"grace_s = {GRACE_S}\n"
        "[database]\n"
        f'url = "sqlite:///{tmp_path / "platform.db"}"\n'
        "[security]\n"
        'mode = "production"\n'
        f"{key}{tls}"
        "[face]\n"
        'verifier = "none"\n',
        encoding="utf-8",
    )
    return config


def cli(config: Path, *args: str) -> str:
    """Run a CLI command on the served database (an admin on the platform's host); its stdout."""
    return subprocess.run(
        [str(PLATFORM_SERVER), "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
        timeout=120,
    ).stdout.strip()


@pytest.fixture
def served(tmp_path: Path, certs: Path) -> Iterator[tuple[ServerProcess, int, grpc.Channel]]:
    key = subprocess.run(
        [str(PLATFORM_SERVER), "keygen"], capture_output=True, text=True, check=True, env=clean_env()
    ).stdout.strip()
    config = write_config(tmp_path, certs, data_key=key)
    # An organiser person and their token, made the way an admin does on the host.
    cli(config, "accounts", "add", "wang.li", "--role", "organiser", "--name", "王丽")
    (tmp_path / "token").write_text(cli(config, "accounts", "token", "wang.li", "--label", "test"), encoding="utf-8")
    server = ServerProcess(config, clean_env())
    try:
        match = server.wait_for(SERVING, START_DEADLINE_S)
        assert match.group(2) == "TLS, kiosk client certificates required"
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(certs / "ca.pem").read_bytes(),
            private_key=(certs / "kiosk-K1.key").read_bytes(),
            certificate_chain=(certs / "kiosk-K1.pem").read_bytes(),
        )
        channel = grpc.secure_channel(f"127.0.0.1:{match.group(1)}", credentials)
        yield server, int(match.group(1)), channel
        channel.close()
    finally:
        server.kill()


def test_serve_answers_health_then_stops_gracefully_on_sigterm_with_a_live_stream(
    served: tuple[ServerProcess, int, grpc.Channel],
) -> None:
    server, _port, channel = served
    token = (server.config.parent / "token").read_text(encoding="utf-8")
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "expertcheckin.v1.KioskService", "expertcheckin.v1.OrganiserService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service

    # An organiser follows the live event stream of a batch when the stop comes.
    organiser = organiser_pb2_grpc.OrganiserServiceStub(channel)
    auth = [("authorization", f"Bearer {token}")]
    organiser.CreateBatch(
        organiser_pb2.CreateBatchRequest(
            request_id="serve-test-create", batch=common_pb2.Batch(code="LIVE", name="在线批次")
        ),
        metadata=auth,
        timeout=10,
    )
    stream = organiser.StreamCheckInEvents(
        organiser_pb2.StreamCheckInEventsRequest(batch_code="LIVE"), metadata=auth, timeout=60
    )
    first_event, ended = threading.Event(), threading.Event()
    outcome: list[object] = []

    def follow() -> None:
        try:
            for item in stream:
                outcome.append(item.kind)
                first_event.set()
        except grpc.RpcError as err:
            outcome.append(err.code())
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    # A refused identify (nobody is invited to this fresh batch) puts one event on the stream: once the
    # follower has it, the stream is live and waiting for the next when SIGTERM comes. K1 is registered
    # for the batch with its certificate, through the CLI, beside the running server.
    cert = server.config.parent / "certs" / "kiosk-K1.pem"
    added = subprocess.run(
        [
            str(PLATFORM_SERVER),
            "--config",
            str(server.config),
            "kiosks",
            "add",
            "K1",
            "--batch",
            "LIVE",
            "--cert",
            str(cert),
        ],
        capture_output=True,
        text=True,
        env=server.env,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    refused = kiosk_pb2_grpc.KioskServiceStub(channel).IdentifyExpert(
        identify_request("K1", "LIVE", make_id(1)), timeout=10
    )
    assert refused.refusal.reason == common_pb2.REFUSAL_REASON_NOT_INVITED
    assert first_event.wait(timeout=10), "the event stream delivered nothing"
    assert not ended.is_set()

    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.stopped(GRACE_S + 10)
    took = time.monotonic() - stopped_at
    log = server.rest_of_log()
    assert code == 0, log
    # The stream ends at the stop (within one event poll, 1 s), not when the grace period runs out.
    assert took < GRACE_S, f"stopping took {took:.1f} s: the open stream held the grace period"
    assert ended.wait(timeout=10), "the event stream was not ended by the stop"
    assert outcome[0] == organiser_pb2.StreamCheckInEventsResponse.KIND_REFUSED
    assert "stopping gracefully" in log
    assert "platform stopped" in log
    assert "Traceback" not in log


def test_a_sigterm_the_kernel_hands_to_another_thread_still_stops_serve_gracefully(
    served: tuple[ServerProcess, int, grpc.Channel],
) -> None:
    """Linux may deliver a process's SIGTERM to any of its threads; Python handles it in the main one.

    Sent here with tgkill to one of serve's other threads (gRPC's, the face workers' pools ...): the
    main thread must still notice it and stop gracefully, not wait for a supervisor's SIGKILL.
    """
    server, _port, _channel = served
    pid = server.process.pid
    other = min(tid for tid in (int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()) if tid != pid)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(pid, other, signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
    code = server.stopped(GRACE_S + 10)
    log = server.rest_of_log()
    assert code == 0, log
    assert "stopping gracefully" in log
    assert "platform stopped" in log


def test_sigusr1_writes_every_threads_stack_and_serving_goes_on(
    served: tuple[ServerProcess, int, grpc.Channel],
) -> None:
    """What an operator (or the stop test above, on a timeout) sends to see where a process waits."""
    server, _port, channel = served
    server.process.send_signal(signal.SIGUSR1)
    assert server._read_until(re.compile(r"^(Current thread|Thread) 0x"), 30) is not None, server.log
    assert server._read_until(re.compile(r'File ".*platform_server/server\.py", line \d+ in serve'), 30), server.log
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_production_without_data_key_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, None, data_key="")
    result = subprocess.run(
        [str(PLATFORM_SERVER), "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "production mode needs [security] data_key" in lines[0]
    assert not (tmp_path / "platform.db").exists()  # refused before touching the database


def test_bad_tls_file_refuses_to_start_before_the_database(tmp_path: Path, certs: Path) -> None:
    (certs / "server.key").write_bytes((certs / "kiosk-K1.key").read_bytes())
    config = write_config(tmp_path, certs, data_key="any-key-text-for-this-test")
    result = subprocess.run(
        [str(PLATFORM_SERVER), "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert "is not the key of" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "platform.db").exists()


def test_a_different_data_key_is_refused_in_one_line_by_serve_and_the_cli(tmp_path: Path, certs: Path) -> None:
    # With TLS configured, so that production mode's TLS rule (loopback included) is not what refuses.
    first = write_config(tmp_path, certs, data_key="the first data key of this test")
    cli(first, "batch", "list")  # the database now holds the first key's fingerprint
    other = write_config(tmp_path, certs, data_key="another data key, not this database's")
    for args in (["serve"], ["batch", "list"], ["audit", "verify"], ["accounts", "list"]):
        result = subprocess.run(
            [str(PLATFORM_SERVER), "--config", str(other), *args],
            capture_output=True,
            text=True,
            env=clean_env(PLATFORM_SERVER_LISTEN="127.0.0.1:0"),
            timeout=60,
            check=False,
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 5, (args, result.stderr)
        assert len(lines) == 1, (args, result.stderr)
        assert "wrong data key: this database was written with key" in lines[0]
