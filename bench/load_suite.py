"""Fault and load suite: kiosks as real gRPC clients doing whole check-ins against a real platform.

Each run seeds a fresh database (an open batch, experts, rooms, bands, kiosks K1..KN, with reference
photos from ../shared/data/faces for face runs), starts the platform as real processes (SQLite: one
`platform-server serve`; PostgreSQL: a private instance by scripts/cluster.sh with one replica, or
three behind HAProxy), a UWB gateway simulator the platform delivers bands to, and N kiosks spread
over client processes. A kiosk identifies (ID only, or with a face capture of the same person) and
completes, retrying a call that failed in transit with the same request id, as the real kiosk does;
beside its check-ins each kiosk beats as the kiosk does (a Heartbeat with its devices and its band
stock, which falls with each check-in, answered with the kiosk's context, every `--heartbeat-s`, 5 s;
0: none).

Faults are injected during the run; afterwards the platform's own records are counted: check-ins a
kiosk was told about but missing (lost), several active check-ins of one invitation (duplicated),
rooms or bands in two active check-ins, bands not written within 10 s (of the check-in, or of the
gateway's return), audit entries the platform left out of its chain and what `audit verify` finds
(JSON only: audit_unplaced, audit_entries, audit_findings, audit_by_action). Baselines are
measured in the same run: the Echo bound (the same N clients calling Diagnostics.Echo flat out; a
check-in is two calls) and the single-face encoding floor (before the platform starts and after the
run; the ratios use their mean, the JSON gives both). Flat out, the share of the Echo bound is also
given taken apart (`EchoCpu`): a check-in's CPU in the serving processes counted in Echo calls, and
their cores during the check-ins against those during Echo. The database's machine is lost with
`--fault failover-postgres`: a synchronous standby (also `--standby` alone) is promoted.

    .venv/bin/python bench/load_suite.py --target sqlite --kiosks 200 --checkins 2000
    .venv/bin/python bench/load_suite.py --target cluster --fault rolling-restart
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto" / "gen")]
from device_kit import ports  # noqa: E402 - after the path set-up above

FACES_DIR = ROOT.parent / "shared" / "data" / "faces"
RETRYABLE = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL"}
CALL_TIMEOUT_S = 30.0
GIVE_UP_S = 90.0  # a kiosk's patience for one call, retries included
UWB_LATE_S = 10.0
IDENTIFY = "/expertcheckin.v1.KioskService/IdentifyExpert"  # the method name in the servers' /metrics
FAULTS = (
    "none",
    "kill-replica",
    "kill-platform",
    "restart-postgres",
    "failover-postgres",
    "rolling-restart",
    "gateway-offline",
    "net-cut",
)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# ---------------------------------------------------------------- faces


def face_people() -> list[tuple[bytes, bytes]]:
    """(reference photo, capture) per person in the shared faces folder: two photos when there are two."""
    return [(ref.read_bytes(), cap.read_bytes()) for ref, cap in _face_paths()]


def _face_paths() -> list[tuple[Path, Path]]:
    by_person: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(FACES_DIR.glob("*")):
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"} and "partial" not in path.name and "small" not in path.name:
            by_person[path.stem.rsplit("_", 1)[0]].append(path)
    return [(photos[0], photos[1] if len(photos) > 1 else photos[0]) for photos in by_person.values()]


@dataclasses.dataclass(frozen=True)
class LiveCapture:
    """What a kiosk sends for one person: its best capture and the liveness challenge's frames."""

    reference: bytes
    capture: bytes
    challenge: str  # kiosk_pb2.LivenessChallenge name
    frames: tuple[tuple[bytes, int], ...]  # (JPEG, ms since the challenge was shown)


def live_captures() -> list[LiveCapture]:
    """Per person, the kiosk's own capture of a synthetic live clip of the capture photo (as in a check-in).

    The clip (camera.simulator) goes through the kiosk's FaceCheck with a challenge that rotates
    over blink, turn left and turn right; the platform checks those frames (its liveness check) and
    compares the first capture with the reference. People whose clip the kiosk cannot complete are left out.
    """
    from camera.errors import SyntheticClipError  # noqa: PLC0415
    from camera.simulator import make_clip  # noqa: PLC0415
    from checkin.face.face_analysis import FaceAnalyser  # noqa: PLC0415
    from checkin.face.models import LivenessChallenge  # noqa: PLC0415
    from tests.integration.face.test_camera_capture import run_check  # noqa: PLC0415

    analyser = FaceAnalyser()
    challenges = list(LivenessChallenge)
    out: list[LiveCapture] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (ref, cap) in enumerate(_face_paths()):
            challenge = challenges[i % len(challenges)]
            try:
                clip = make_clip(cap, Path(tmp) / str(i), blink=True, frames=45, finder=analyser)
            except SyntheticClipError:  # a photo the clip maker cannot animate: leave the person out
                continue
            _statuses, result = run_check(clip, analyser, challenge=challenge)
            if result is None or not result.passed:
                continue
            frames = tuple((f.jpeg, f.at_ms) for f in result.challenge_frames)
            out.append(
                LiveCapture(ref.read_bytes(), result.jpeg_frames[0], f"LIVENESS_CHALLENGE_{challenge.name}", frames)
            )
    return out


def encoding_floor(captures: list[bytes]) -> float:
    """Seconds of one verification of one capture in this process (best of a few, per image, mean)."""
    from platform_server.face.dlib_verifier import DlibFaceVerifier  # noqa: PLC0415

    verifier = DlibFaceVerifier()
    bests = []
    for capture in captures:
        reference = verifier.encode_reference(capture)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            verifier.verify(reference, [capture])
            best = min(best, time.perf_counter() - t)
        bests.append(best)
    return sum(bests) / len(bests)


def face_floors(s: Seed, *, kiosk_liveness: bool) -> tuple[float, float]:
    """The single-face floor on the very captures the kiosks send (one per person), and the Identify face floor.

    With the liveness left to the kiosk an Identify's face work is one verification: the two are one.
    """
    floor = encoding_floor(list(dict.fromkeys(s.captures)))
    return floor, (floor if kiosk_liveness else identify_floor(s.people))


def mean_floors(
    before: tuple[float, float] | None, after: tuple[float, float] | None
) -> tuple[float, float, dict[str, float]]:
    """The floors a run's ratios use: the mean of those measured before and after it (NaN without faces).

    Also each measurement, in ms, for the run's figures: how far the machine's speed moved meanwhile.
    """
    if before is None or after is None:
        return float("nan"), float("nan"), {}
    floor, per_identify = ((b + a) / 2 for b, a in zip(before, after, strict=True))
    figures = {
        "face_floor_before_ms": round(before[0] * 1000, 1),
        "face_floor_after_ms": round(after[0] * 1000, 1),
        "identify_face_floor_before_ms": round(before[1] * 1000, 1),
        "identify_face_floor_after_ms": round(after[1] * 1000, 1),
    }
    return floor, per_identify, figures


def identify_floor(people: list[LiveCapture]) -> float:
    """Seconds of one Identify's face work in this process: the liveness check and the verification.

    Best of three per person, mean over people: the same calls the platform's face workers make for an
    Identify (face.pool.check_liveness_and_verify: the motion part, the comparison with the compared
    capture's descriptor, the last frame with that descriptor), one after the other in one process, so
    the capture is described once, as on the platform (the single-face floor above is the comparison alone).
    """
    from platform_server.face import api  # noqa: PLC0415
    from platform_server.face.dlib_verifier import DlibFaceVerifier  # noqa: PLC0415
    from platform_server.face.liveness_check import DlibLivenessChecker  # noqa: PLC0415

    verifier = DlibFaceVerifier()
    checker = DlibLivenessChecker(verifier=verifier)
    bests = []
    for live in people:
        reference = verifier.encode_reference(live.reference)
        evidence = api.LivenessEvidence(
            api.LivenessChallenge(live.challenge.removeprefix("LIVENESS_CHALLENGE_").lower()),
            "floor",
            tuple(api.ChallengeFrame(image, ms) for image, ms in live.frames),
        )
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            checker.motion_part(evidence)
            _, compared = verifier.verify_and_describe(reference, [live.capture])
            checker.ends_part(evidence.frames[-1], [live.capture], compared)
            best = min(best, time.perf_counter() - t)
        bests.append(best)
    return sum(bests) / len(bests)


# ---------------------------------------------------------------- seeding


@dataclasses.dataclass
class Seed:
    batch_codes: list[str]  # batch b holds experts b, b + B, b + 2B ... and kiosks K(b+1), K(b+1+B) ...
    ids: list[str]
    band_uids: list[str]
    band_tags: list[int]
    captures: list[bytes]  # per expert: the capture image (empty for ID-only)
    liveness: list[tuple[str, tuple[tuple[bytes, int], ...]]]  # per expert: the challenge and its frames
    people: list[LiveCapture]  # face runs: what each person's kiosk sends

    @property
    def batch_code(self) -> str:
        """The first batch's code (the only one unless seeded with several)."""
        return self.batch_codes[0]


def seed(url: str, key_text: str, *, experts: int, kiosks: int, faces: bool, batches_n: int = 1) -> Seed:
    """Migrate and fill the database through the platform's own services.

    With `batches_n` > 1 the experts (with their rooms) and the kiosks are dealt round-robin over that
    many batches of one hotel, as a provincial peak spreads over many evaluations at once.
    """
    from personal_data.crypto import DataKey  # noqa: PLC0415
    from platform_server.config import RulesSection  # noqa: PLC0415
    from platform_server.db.engine import make_engine, make_session_factory, upgrade  # noqa: PLC0415
    from platform_server.db.unit_of_work import UnitOfWork  # noqa: PLC0415
    from platform_server.services import batches, keyring, roster  # noqa: PLC0415
    from platform_server.services.context import ServiceContext, utc_now  # noqa: PLC0415
    from tests.unit.platform_server.support import band, many_ids  # noqa: PLC0415

    if not 1 <= batches_n <= kiosks:
        raise ValueError(f"--batches must be between 1 and the number of kiosks ({kiosks}), not {batches_n}")
    engine = make_engine(url)
    upgrade(engine)
    data_key = DataKey.from_text(key_text)
    keyring.open_keys(engine, data_key)  # the key's fingerprint and the audit chain's key, as serve does
    uow = UnitOfWork(make_session_factory(engine))
    ctx = ServiceContext(data_key=data_key, rules=RulesSection(), face_verifier=None)
    now = utc_now()
    codes = ["LOAD"] if batches_n == 1 else [f"LOAD{b + 1}" for b in range(batches_n)]
    for code in codes:
        batches.create_batch(
            uow,
            ctx,
            batches.BatchSpec(
                code=code,
                name="负载测试批次 / load test",
                hotel_code="HTL1",
                hotel_name="国际饭店",
                evaluation_start=now + dt.timedelta(hours=2),
                evaluation_end=now + dt.timedelta(hours=10),
                check_in_opens=now - dt.timedelta(hours=1),
                allow_id_only=not faces,
            ),
        )
    ids = many_ids(experts)
    bands = [band(i) for i in range(experts)]
    rows = [
        roster.InvitationRow(v, f"专家{i}", f"1380000{i % 10000:04d}", "某设计院", "给排水") for i, v in enumerate(ids)
    ]
    with uow:
        roster.write_bands(uow, ctx, bands)
        for b, code in enumerate(codes):
            roster.write_rooms(uow, ctx, code, [f"{1000 + i}" for i in range(b, experts, batches_n)])
            roster.write_invitations(uow, ctx, code, roster.prepare(ctx.data_key, rows[b::batches_n]))
        uow.commit()
    with uow:
        for k in range(1, kiosks + 1):
            uow.execute(
                sa_insert_kiosk(),
                {"kiosk_id": f"K{k}", "name": f"K{k}", "location": "", "batch_code": codes[(k - 1) % batches_n]},
            )
        uow.commit()
    captures: list[bytes] = []
    liveness: list[tuple[str, tuple[tuple[bytes, int], ...]]] = []
    if faces:
        from platform_server.face.dlib_verifier import DlibFaceVerifier  # noqa: PLC0415

        verifier = DlibFaceVerifier()
        people = [(live, verifier.encode_reference(live.reference)) for live in live_captures()]
        with uow:
            expert_ids = roster.expert_ids_by_hash(uow, roster.hashes_of(ctx.data_key, ids))
            for i, id_value in enumerate(ids):
                live, encoding = people[i % len(people)]
                expert_id = expert_ids[roster.hashes_of(ctx.data_key, [id_value])[0]]
                roster.write_reference_photo(uow, ctx, expert_id, live.reference, encoding, actor="load")
                captures.append(live.capture)
                liveness.append((live.challenge, live.frames))
            uow.commit()
    engine.dispose()
    people_sent = [live for live, _ in people] if faces else []
    return Seed(codes, ids, [b[0] for b in bands], [int(b[1], 16) for b in bands], captures, liveness, people_sent)


def sa_insert_kiosk() -> Any:
    """Kiosks in one statement (register_kiosk writes one audited transaction each: slow for 200)."""
    import sqlalchemy as sa  # noqa: PLC0415

    return sa.text(
        "INSERT INTO kiosks (kiosk_id, name, location, batch_id, out_of_service, band_stock, pending_check_ins,"
        " software_version, devices_json)"
        " SELECT :kiosk_id, :name, :location, id, false, 100, 0, '', '[]' FROM batches WHERE code = :batch_code"
    )


# ---------------------------------------------------------------- targets


class Target:
    """Where the platform runs: start, the address kiosks use, faults, the database URL for counting."""

    name = ""
    url = ""
    address = ""
    key = ""
    # Put before every command that starts platform processes (PostgreSQL and HAProxy included): `taskset`
    # when --platform-cpus keeps them on their own cores.
    command_prefix: tuple[str, ...] = ()

    def start_database(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def fault(self, kind: str, log: list[str]) -> None:  # noqa: ARG002  (the targets' faults log)
        raise SystemExit(f"fault {kind} is not available on {self.name}")

    def write_lock(self) -> dict[str, float] | None:
        """The platform's SQLite write-lock counters from its /metrics (None: not SQLite, or unreachable)."""
        return None

    def health_ports(self) -> list[int]:
        """The serving processes' health ports (their /metrics)."""
        return []

    def serving_cpus(self) -> list[int] | None:
        """The CPUs the serving process may run on (None: not known for this target)."""
        return None

    def cpu_seconds(self) -> dict[str, float] | None:
        """CPU seconds so far of the serving processes and of their children (face workers, UWB delivery).

        From each process's /metrics (`process_cpu_seconds_total`, `platform_child_processes_cpu_seconds_total`).
        None: a process could not be read.
        """
        from sim_world.metrics_client import MetricsError, PlatformMetrics  # noqa: PLC0415

        totals = {"serving": 0.0, "children": 0.0}
        for port in self.health_ports():
            try:
                samples = PlatformMetrics(f"http://127.0.0.1:{port}/metrics", timeout_s=10).scrape().samples
            except MetricsError:
                return None
            totals["serving"] += samples.get("process_cpu_seconds_total", float("nan"))
            totals["children"] += samples.get("platform_child_processes_cpu_seconds_total", float("nan"))
        return totals

    def identify_server_seconds(self) -> dict[float, float] | None:
        """IdentifyExpert as the serving processes timed it: calls at most `bound` seconds long, summed.

        From each process's RPC duration histogram (platform_server/rpc_metrics.py): the server's share
        of a kiosk's wait, apart from the network and the kiosk process. Counts start again when a
        process restarts. None: a process could not be read.
        """
        from sim_world.metrics_client import MetricsError, PlatformMetrics  # noqa: PLC0415

        counts: dict[float, float] = defaultdict(float)
        for port in self.health_ports():
            try:
                buckets = PlatformMetrics(f"http://127.0.0.1:{port}/metrics", timeout_s=10).rpc_buckets(IDENTIFY)
            except MetricsError:
                return None
            for bound, calls in buckets.items():
                counts[bound] += calls
        return dict(counts)


@dataclasses.dataclass(frozen=True)
class FaceSettings:
    """A run's [face] settings for every platform process; `processes` None: ID-only, no face models loaded."""

    processes: int | None = None
    liveness: str = "platform"  # "platform" checks the kiosks' challenge frames, "kiosk" trusts their flag
    queue: int | None = None  # None: the platform's default


def _env(key: str, uwb_url: str, face: FaceSettings) -> dict[str, str]:
    """The platform's settings, the same for every target."""
    env = dict(os.environ)
    env.update(
        PLATFORM_FACE_LIVENESS=face.liveness,
        PLATFORM_FACE_VERIFIER="dlib" if face.processes is not None else "none",
        PLATFORM_DATA_KEY=key,
        PLATFORM_UWB_PORT=uwb_url,
        PLATFORM_UWB_POLL_S="0.2",
        PLATFORM_UWB_RETRY_S="0.5",
        PLATFORM_FACE_PROCESSES=str(face.processes or 0),
        PLATFORM_SERVER_MAX_WORKERS="64",
        PLATFORM_LOGGING_LEVEL=os.environ.get("LOAD_LOG_LEVEL", "WARNING"),
        # Kiosks as plaintext clients on loopback: the load is the platform's, not TLS handshakes'.
        PLATFORM_SECURITY_INSECURE_KIOSKS="1",
    )
    if face.queue is not None:
        env["PLATFORM_FACE_QUEUE"] = str(face.queue)
    return env


def parse_cpus(text: str) -> set[int]:
    """A taskset CPU list ("0", "0,2", "1-3") as a set of this process's CPUs (argparse's `type`).

    Raises argparse.ArgumentTypeError naming what is wrong, which argparse prints as it is.
    """
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a CPU number or range (as taskset takes them: 0, 0,2 or 1-3)"
            )
        cpus.update(range(int(first), int(last or first) + 1))
    if unknown := cpus - os.sched_getaffinity(0):
        raise argparse.ArgumentTypeError(
            f"CPU {min(unknown)} is not among this process's {sorted(os.sched_getaffinity(0))}"
        )
    return cpus


def keep_platform_apart(platform_cpus: set[int] | None) -> tuple[int, tuple[str, ...]]:
    """The platform's cores and the prefix of its commands; with CPUs given, this process moves off them.

    The kiosks as if on machines of their own: this process (the gateway simulator, the kiosk processes
    it starts, the floors) runs on the other CPUs, threads started later inheriting that; the platform's
    processes are started under `taskset` on the given ones.
    """
    if platform_cpus is None:
        return len(os.sched_getaffinity(0)), ()
    os.sched_setaffinity(0, os.sched_getaffinity(0) - platform_cpus)
    return len(platform_cpus), ("taskset", "--cpu-list", ",".join(map(str, sorted(platform_cpus))))


def wait_port(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"platform did not listen on {port}")


class SqliteTarget(Target):
    name = "SQLite"

    def __init__(self, tmp: Path, key: str, uwb_url: str, face: FaceSettings) -> None:
        self.url = f"sqlite:///{tmp / 'platform.db'}"
        self.key = key
        self.port = ports.free_port()  # below the ephemeral range: (re)started on it later
        self.address = f"127.0.0.1:{self.port}"
        self.health_port = ports.free_port()
        self._env = _env(key, uwb_url, face) | {
            "PLATFORM_DB_URL": self.url,
            "PLATFORM_SERVER_HEALTH_LISTEN": f"127.0.0.1:{self.health_port}",
        }
        self._log = tmp / "platform.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.command_prefix, str(ROOT / ".venv/bin/platform-server"), "serve", "--listen", self.address],
                env=self._env,
                stdout=log,
                stderr=log,
            )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired as err:
                # Not left running after a failed run: its stacks to its log (serve's SIGUSR1), then killed.
                self.proc.send_signal(signal.SIGUSR1)
                self._await_stacks(10)
                self.proc.kill()
                self.proc.wait()
                tail = "\n".join(self._log.read_text(errors="replace").splitlines()[-80:])
                message = f"the platform did not stop within 60 s of SIGTERM (killed); its log ends:\n{tail}"
                raise RuntimeError(message) from err

    def _await_stacks(self, deadline_s: float) -> None:
        """Poll the log (at most `deadline_s`) until faulthandler has begun writing the thread stacks."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if re.search(r"^(Current thread|Thread) 0x", self._log.read_text(errors="replace"), re.MULTILINE):
                return
            time.sleep(0.05)

    def health_ports(self) -> list[int]:
        return [self.health_port]

    def serving_cpus(self) -> list[int] | None:
        return None if self.proc is None else sorted(os.sched_getaffinity(self.proc.pid))

    def write_lock(self) -> dict[str, float] | None:
        from sim_world.metrics_client import MetricsError, PlatformMetrics  # noqa: PLC0415

        try:
            samples = PlatformMetrics(f"http://127.0.0.1:{self.health_port}/metrics", timeout_s=10).scrape().samples
        except MetricsError:
            return None
        prefix, suffix = "platform_sqlite_write_", "_total"
        found = {
            name.removeprefix(prefix).removesuffix(suffix): value
            for name, value in samples.items()
            if name.startswith(prefix) and name.endswith(suffix)
        }
        return found or None

    def fault(self, kind: str, log: list[str]) -> None:
        if kind != "kill-platform":
            super().fault(kind, log)
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        log.append(f"{time.monotonic():.1f} platform SIGKILLed")
        self.start()
        log.append(f"{time.monotonic():.1f} platform restarted")


class ClusterTarget(Target):
    """scripts/cluster.sh: a private PostgreSQL (with `standby`, and its synchronous standby) and 1 or 3 replicas."""

    def __init__(
        self,
        tmp: Path,
        key: str,
        uwb_url: str,
        face: FaceSettings,
        replicas: int,
        *,
        standby: bool = False,
    ) -> None:
        self.name = "PostgreSQL, 1 platform" if replicas == 1 else f"cluster, {replicas} replicas + HAProxy"
        if standby:
            self.name += ", synchronous standby"
        self.key = key
        pg_port, lb_port = ports.free_port(), ports.free_port()
        standby_port = ports.free_port() if standby else None
        self.ports = [ports.free_port() for _ in range(replicas)]
        self.replicas = replicas
        self.env = _env(key, uwb_url, face) | {
            "CLUSTER_DIR": str(tmp / "cluster"),
            "PG_PORT": str(pg_port),
            "LB_PORT": str(lb_port),
            "REPLICA_PORTS": " ".join(map(str, self.ports)),
            "FACE_PROCESSES": str(face.processes or 0),
            "UWB_PORT": uwb_url,
        }
        if standby_port is None:
            self.url = f"postgresql+psycopg://checkin:checkin@127.0.0.1:{pg_port}/checkin"
        else:  # as scripts/cluster.sh gives it to the replicas: whichever of the two takes writes
            self.env["PG_STANDBY_PORT"] = str(standby_port)
            self.url = (
                f"postgresql+psycopg://checkin:checkin@/checkin?host=127.0.0.1:{pg_port}&host=127.0.0.1:{standby_port}"
                "&target_session_attrs=read-write"
            )
        self.address = f"127.0.0.1:{lb_port}" if replicas > 1 else f"127.0.0.1:{self.ports[0]}"

    def script(self, *args: str) -> None:
        subprocess.run([*self.command_prefix, str(ROOT / "scripts/cluster.sh"), *args], env=self.env, check=True)

    def start_database(self) -> None:
        self.script("start-postgres")

    def health_ports(self) -> list[int]:
        return [port + 100 for port in self.ports]  # scripts/cluster.sh: health_port()

    def start(self) -> None:
        self.script("start")

    def stop(self) -> None:
        self.script("stop")

    def uwb_driver(self) -> int | None:
        """Which replica (1..N) drives the UWB gateway now: the one whose delivery process holds the lease.

        The lease is an advisory lock on a connection of its own (platform_server/worker_lease.py), idle
        between its checks; its client port names the delivery process (`ss`), whose parent is the
        replica serving on one of `self.ports`. None when that cannot be told (no holder yet, no `ss`).
        """
        import sqlalchemy as sa  # noqa: PLC0415

        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as c:
                for _ in range(20):  # the holder's connection is active for a moment at each of its checks
                    client_port = c.exec_driver_sql(
                        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE l.locktype = 'advisory' AND l.granted AND a.state = 'idle' LIMIT 1"
                    ).scalar()
                    c.rollback()  # a fresh snapshot of pg_stat_activity for the next look
                    if client_port is not None:
                        break
                    time.sleep(0.05)
            sockets = subprocess.run(
                ["ss", "-tnpH", "state", "established", f"( sport = :{client_port} )"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
            pid = int(re.findall(r"pid=(\d+)", sockets)[0])
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            args = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
            listen = args[args.index(b"--listen") + 1].decode()
            return self.ports.index(int(listen.rpartition(":")[2])) + 1
        except (sa.exc.DBAPIError, OSError, subprocess.SubprocessError, IndexError, ValueError):
            return None
        finally:
            engine.dispose()

    def fault(self, kind: str, log: list[str]) -> None:
        if kind == "kill-platform" or (kind == "kill-replica" and self.replicas > 1):
            n = "1" if self.replicas == 1 else "2"
            driver = self.uwb_driver() if self.replicas > 1 else None
            self.script("kill-replica", n)
            drove = "" if driver is None else f" (replica {driver} drove the UWB gateway)"
            log.append(f"{time.monotonic():.1f} replica {n} SIGKILLed{drove}")
            if self.replicas > 1:
                time.sleep(5)  # the others carry the load meanwhile
            self.script("start-replica", n)
            log.append(f"{time.monotonic():.1f} replica {n} started again")
        elif kind == "restart-postgres":
            self.script("restart-postgres")
            log.append(f"{time.monotonic():.1f} PostgreSQL restarted")
        elif kind == "failover-postgres":
            self.script("failover-postgres")
            log.append(f"{time.monotonic():.1f} PostgreSQL primary stopped at once, the standby promoted")
        elif kind == "rolling-restart":
            for replica in range(1, self.replicas + 1):
                self.script("restart-replica", str(replica))
                log.append(f"{time.monotonic():.1f} replica {replica} drained, stopped, started")
        else:
            super().fault(kind, log)


# ---------------------------------------------------------------- a TCP proxy that can cut a kiosk's network


class CuttableProxy:
    """127.0.0.1:port -> target; cut() drops every connection and refuses new ones for a while."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._conns: set[socket.socket] = set()
        self._down_until = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            if time.monotonic() < self._down_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()


# ---------------------------------------------------------------- kiosks (client processes)


@dataclasses.dataclass
class Plan:
    address: str
    cut_address: str  # kiosks whose network can be cut (the first few) connect here
    cut_kiosks: int
    batch_codes: list[str]  # kiosk k serves batch_codes[(k - 1) % len(batch_codes)]
    mode: str  # "flat" | "pace" | "echo"
    pace_s: float
    duration_s: float
    start_at: float  # time.time() when every kiosk starts
    kiosks: dict[int, list[int]]  # kiosk number -> expert indices
    ids: list[str]
    band_uids: list[str]
    captures: list[bytes]
    liveness: list[tuple[str, tuple[tuple[bytes, int], ...]]]
    heartbeat_s: float = 0.0  # each kiosk beats this often beside its check-ins, as the kiosk does (0: never)


# The devices a kiosk reports in its heartbeat (all well: a beat changes only when its band stock does).
KIOSK_DEVICES = ("id_card_reader", "camera", "bank_card_reader", "arm", "rfid_reader", "printer")
# Bands a kiosk holds beyond the check-ins it is given (so none reports its stock low).
SPARE_BANDS = 50


def kiosk_process(plan: Plan, results: Any, progress: Any) -> None:  # noqa: C901, PLR0915  (one kiosk's whole day)
    """Run the kiosks of one client process as threads; put their figures on `results`."""
    import grpc  # noqa: PLC0415
    from expertcheckin.v1 import diagnostics_pb2, diagnostics_pb2_grpc, kiosk_pb2, kiosk_pb2_grpc  # noqa: PLC0415

    from checkin.flow.machine import busy_wait_s  # noqa: PLC0415
    from checkin.platform_client import busy_advice  # noqa: PLC0415
    from tests.integration.platform_server.rpc_helpers import complete_request, identify_request  # noqa: PLC0415

    channels = [grpc.insecure_channel(plan.address) for _ in range(4)]
    cut_channel = grpc.insecure_channel(plan.cut_address)
    out: dict[str, Any] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def call(fn: Any, request: Any, name: str) -> Any:
        """One call with the kiosk's retry: same request, backoff, until GIVE_UP_S."""
        deadline = time.monotonic() + GIVE_UP_S
        t = time.perf_counter()
        delay = 0.05
        first_busy: float | None = None
        while True:
            if first_busy is not None:  # as the kiosk says it: how long since the first busy answer
                request.busy_waited_ms = max(1, round((time.monotonic() - first_busy) * 1000))
            try:
                answer = fn(request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as err:
                code = err.code().name
                if code not in RETRYABLE or time.monotonic() > deadline:
                    with lock:
                        counts[f"{name}_failed_{code}"] += 1
                    raise
                with lock:
                    counts[f"retries_{code}"] += 1
                    if counts[f"retries_{code}"] <= 3:  # what the kiosk was told, to find the source
                        out["error_samples"].append(f"{name}: {code} {err.details()}"[:200])
                advised = busy_advice(err)
                if advised is not None and first_busy is None and name == "identify":
                    first_busy = time.monotonic()
                # A busy answer is waited out as the kiosk's flow does; other failures back off.
                time.sleep(busy_wait_s(advised) if advised is not None else delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            with lock:
                out[name].append(time.perf_counter() - t)
            return answer

    def unchecked_frames(stub: Any, kiosk_id: str) -> bool:
        """As the kiosk asks: True when the platform does not check the challenge's frames (then left out)."""
        try:
            context = call(stub.GetKioskContext, kiosk_pb2.GetKioskContextRequest(kiosk_id=kiosk_id), "context")
        except grpc.RpcError:
            return False  # counted by call(); the frames are sent
        return bool(context.liveness_frames_unchecked)

    def heartbeats(stub: Any, kiosk_id: str, bands_left: list[int], stop: threading.Event, first_s: float) -> None:
        """As the kiosk's heartbeat thread: every `heartbeat_s` a Heartbeat, answered with the context; no retries.

        The band stock falls with each check-in, so under load most beats change it and are written.
        """
        devices = [kiosk_pb2.DeviceHealth(device=d, state=kiosk_pb2.DEVICE_STATE_OK) for d in KIOSK_DEVICES]
        context = kiosk_pb2.GetKioskContextRequest(kiosk_id=kiosk_id)
        while not stop.wait(first_s):
            first_s = plan.heartbeat_s
            beat = kiosk_pb2.HeartbeatRequest(
                kiosk_id=kiosk_id,
                devices=devices,
                band_stock=bands_left[0],
                software_version="load-suite",
                printer_paper=kiosk_pb2.PRINTER_PAPER_OK,
            )
            beat.kiosk_time.GetCurrentTime()
            t = time.perf_counter()
            try:
                ack = stub.Heartbeat(beat, timeout=CALL_TIMEOUT_S)
                if not ack.HasField("context"):  # a platform before the context in the answer
                    stub.GetKioskContext(context, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as err:  # the kiosk logs it and beats again next time
                with lock:
                    counts[f"heartbeat_failed_{err.code().name}"] += 1
                continue
            with lock:
                out["heartbeat"].append(time.perf_counter() - t)

    def kiosk(k: int, experts: list[int]) -> None:
        """One kiosk: its check-ins, and its heartbeats on a thread of their own until they are done."""
        channel = cut_channel if k <= plan.cut_kiosks else channels[k % len(channels)]
        beating = threading.Event()
        bands_left = [len(experts) + SPARE_BANDS]
        beater = None
        if plan.mode != "echo" and plan.heartbeat_s > 0:
            stub = kiosk_pb2_grpc.KioskServiceStub(channel)
            first_s = max(0.0, plan.start_at - time.time()) + random.Random(-k).random() * plan.heartbeat_s
            args = (stub, f"K{k}", bands_left, beating, first_s)
            beater = threading.Thread(target=heartbeats, args=args, name=f"heartbeat-{k}")
            beater.start()
        try:
            check_ins(k, channel, experts, bands_left)
        finally:
            beating.set()
            if beater is not None:
                beater.join()

    def check_ins(k: int, channel: Any, experts: list[int], bands_left: list[int]) -> None:  # noqa: C901, PLR0915
        """The kiosk's check-ins, one after another (at human pace, one each `pace_s`), with its retries."""
        stub = kiosk_pb2_grpc.KioskServiceStub(channel)
        echo = diagnostics_pb2_grpc.DiagnosticsServiceStub(channel)
        echo_request = diagnostics_pb2.EchoRequest(message="x" * 32)
        kiosk_id = f"K{k}"
        batch_code = plan.batch_codes[(k - 1) % len(plan.batch_codes)]
        rng = random.Random(k)
        time.sleep(max(0.0, plan.start_at - time.time()))
        if plan.mode == "echo":
            end = time.monotonic() + plan.duration_s
            n = 0
            while time.monotonic() < end:
                echo.Echo(echo_request, timeout=CALL_TIMEOUT_S)
                n += 1
            with lock:
                counts["echo_calls"] += n
            return
        if plan.mode == "pace":
            time.sleep(rng.random() * plan.pace_s)
        frames_unchecked = bool(plan.captures) and unchecked_frames(stub, kiosk_id)
        for n in experts:
            started = time.monotonic()
            if plan.mode == "pace":
                call(echo.Echo, echo_request, "echo")
            faces = [plan.captures[n]] if plan.captures else None
            request = identify_request(kiosk_id, batch_code, plan.ids[n], faces)
            if faces:
                challenge, frames = plan.liveness[n]
                request.liveness.CopyFrom(
                    kiosk_pb2.LivenessEvidence(
                        challenge=challenge,
                        challenge_id=f"load-{n}",
                        frames=[
                            kiosk_pb2.ChallengeFrame(image=image, captured_at_ms=ms)
                            for image, ms in (() if frames_unchecked else frames)
                        ],
                    )
                )
            try:
                ident = call(stub.IdentifyExpert, request, "identify")
                if faces:
                    with lock:
                        counts["faces"] += 1
                if ident.outcome != kiosk_pb2.IdentifyExpertResponse.OUTCOME_VERIFIED:
                    with lock:
                        counts[f"identify_refused_{ident.refusal.reason}"] += 1
                    continue
                done = call(
                    stub.CompleteCheckIn,
                    complete_request(kiosk_id, ident.identification_token, plan.band_uids[n]),
                    "complete",
                )
                if done.outcome != kiosk_pb2.CompleteCheckInResponse.OUTCOME_COMPLETED:
                    with lock:
                        counts[f"complete_refused_{done.refusal.reason}"] += 1
                    continue
            except grpc.RpcError:
                continue
            bands_left[0] -= 1
            with lock:
                out["seen"].append((n, done.check_in.check_in_id, time.time()))
                counts["ok"] += 1
            with progress.get_lock():
                progress.value += 1
            if plan.mode == "pace":
                time.sleep(max(0.0, plan.pace_s - (time.monotonic() - started)))

    threads = [threading.Thread(target=kiosk, args=(k, e)) for k, e in plan.kiosks.items()]
    for t in threads:
        t.start()
    # This process's CPU from the start (its threads wait for it) to the end: the load's own cost,
    # without the imports and channels before it.
    time.sleep(max(0.0, plan.start_at - time.time()))
    cpu_at_start = time.process_time()
    for t in threads:
        t.join()
    out["kiosk_cpu_s"].append(time.process_time() - cpu_at_start)
    results.put({"out": dict(out), "counts": dict(counts)})


def run_kiosks(plan: Plan, processes: int, on_progress: Any = None) -> tuple[dict[str, Any], dict[str, int], float]:
    """Split the kiosks over client processes; wait; merge. Returns (lists, counts, seconds)."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    progress = ctx.Value("i", 0)
    numbers = sorted(plan.kiosks)
    procs = []
    plan.start_at = time.time() + 2.0  # every client process has started its threads by then
    for p in range(processes):
        part = dataclasses.replace(plan, kiosks={k: plan.kiosks[k] for k in numbers[p::processes]})
        proc = ctx.Process(target=kiosk_process, args=(part, results, progress))
        proc.start()
        procs.append(proc)
    time.sleep(max(0.0, plan.start_at - time.time()))
    t0 = time.monotonic()
    injector = None
    if on_progress is not None:
        injector = threading.Thread(target=on_progress, args=(progress,), daemon=True)
        injector.start()
    merged: dict[str, Any] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for _ in procs:
        r = results.get()
        for k, v in r["out"].items():
            merged[k].extend(v)
        for k, v in r["counts"].items():
            counts[k] += v
    seconds = time.monotonic() - t0
    for proc in procs:
        proc.join()
    if injector is not None and injector.is_alive():
        counts["fault_outlasted_load"] = 1  # the run was too short for the fault: say so in the figures
        injector.join()
    return merged, counts, seconds


# ---------------------------------------------------------------- counting from the platform's records


def audit_records(url: str, key_text: str, timeout: float) -> dict[str, Any]:
    """The audit log once the platform placed what it sealed: entries left unplaced, and a full verify.

    On PostgreSQL writers seal their entries and every serving process's chainer places them within a
    fraction of a second (platform_server/audit_chainer.py): wait up to `timeout` for none to be left.
    """
    import sqlalchemy as sa  # noqa: PLC0415

    from personal_data.crypto import DataKey  # noqa: PLC0415
    from platform_server.db.engine import make_engine  # noqa: PLC0415
    from platform_server.services import audit_chain, keyring  # noqa: PLC0415

    engine = make_engine(url)
    try:
        unplaced_sql = sa.text("SELECT count(*) FROM audit_log WHERE seq IS NULL")
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as c:
                unplaced = int(c.execute(unplaced_sql).scalar_one())
            if unplaced == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        key = keyring.open_keys(engine, DataKey.from_text(key_text))
        report = audit_chain.verify(engine, key)  # on PostgreSQL this places anything still sealed first
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT action, count(*) FROM audit_log GROUP BY action")).all()
        return {
            "audit_unplaced": unplaced,
            "audit_entries": report.entries,
            "audit_findings": len(report.findings),
            "audit_by_action": {str(action): int(n) for action, n in sorted(rows)},
        }
    finally:
        engine.dispose()


def count_records(url: str, seen: list[tuple[int, str, float]], gateway_back: float | None) -> dict[str, float]:
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(url)
    with engine.connect() as c:
        active = c.exec_driver_sql(
            "SELECT public_id, invitation_id, room_id, wristband_id FROM check_ins WHERE annulled_at IS NULL"
        ).all()
        uwb = c.exec_driver_sql(
            "SELECT d.state, d.created_at, d.delivered_at FROM uwb_deliveries d WHERE d.kind = 'assign'"
        ).all()
    engine.dispose()
    public = {r[0] for r in active}

    def twice(col: int) -> int:
        seen_values: dict[Any, int] = defaultdict(int)
        for r in active:
            seen_values[r[col]] += 1
        return sum(1 for v in seen_values.values() if v > 1)

    late = 0
    delays: list[float] = []  # seconds from the check-in (or the gateway's return) to the band's write
    for state, created, delivered in uwb:
        created_ts = _ts(created)
        start = max(created_ts, gateway_back) if gateway_back is not None else created_ts
        if state == "delivered":
            delays.append(max(0.0, _ts(delivered) - start))
        if state != "delivered" or _ts(delivered) - start > UWB_LATE_S:
            late += 1
    return {
        "platform_check_ins": len(active),
        "lost": sum(1 for _, pid, _ in seen if pid not in public),
        "duplicated": twice(1),
        "rooms_twice": twice(2),
        "bands_twice": twice(3),
        "uwb_late": late,
        "uwb_rows": len(uwb),
        "uwb_delay_p50_s": round(pct(delays, 0.5) / 1000, 1),  # pct gives ms
        "uwb_delay_max_s": round(max(delays, default=float("nan")), 1),
    }


def _ts(value: Any) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return float(value.timestamp())


def wait_uwb(url: str, timeout: float) -> None:
    """Wait (bounded) until the outbox holds no pending band writes."""
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as c:
            if not c.exec_driver_sql("SELECT count(*) FROM uwb_deliveries WHERE state = 'pending'").scalar():
                break
        time.sleep(0.5)
    engine.dispose()


# ---------------------------------------------------------------- one run


def start_seeded(
    target: Target, sim: Any, args: argparse.Namespace, key: str, checkins: int
) -> tuple[Seed, tuple[float, float] | None]:
    """The database, its seed, the face floors before the run, the platform: the run's seed and floors.

    Nothing a failed start began is left running into the next run (a port another process took between
    its choice and its bind: HAProxy then exits, and the replicas and PostgreSQL would stay).
    """
    target.start_database()
    try:
        s = seed(target.url, key, experts=checkins, kiosks=args.kiosks, faces=args.faces, batches_n=args.batches)
        # The floors before the platform starts, and again after it: this machine's speed drifts within minutes.
        floors_before = face_floors(s, kiosk_liveness=args.kiosk_liveness) if args.faces else None
        for tag in s.band_tags:
            sim.add_tag(tag)
        target.start()
    except BaseException:
        target.stop()
        sim.stop()
        raise
    return s, floors_before


def one_run(args: argparse.Namespace) -> dict[str, Any]:  # noqa: C901, PLR0915  (a run, start to figures)
    from personal_data.crypto import DataKey  # noqa: PLC0415
    from uwb.simulator import GatewaySimulator  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="load-"))
    os.chmod(tmp, 0o755)  # noqa: PTH101  (the private PostgreSQL runs as postgres)
    key = DataKey.generate_text()
    checkins = args.checkins if args.mode == "flat" else int(args.kiosks * (args.duration / args.pace + 1))
    face = FaceSettings(
        args.face_processes if args.faces else None, "kiosk" if args.kiosk_liveness else "platform", args.face_queue
    )
    cores, command_prefix = keep_platform_apart(args.platform_cpus)
    sim = GatewaySimulator(tags=(), delivery_window_s=2.0, retry_interval_s=0.01).start()
    if args.target == "sqlite":
        target: Target = SqliteTarget(tmp, key, sim.url, face)
    else:
        replicas = 1 if args.target == "postgres" else args.replicas
        standby = args.standby or args.fault == "failover-postgres"
        target = ClusterTarget(tmp, key, sim.url, face, replicas, standby=standby)
    target.command_prefix = command_prefix
    s, floors_before = start_seeded(target, sim, args, key, checkins)
    proxy = CuttableProxy(target.address)
    try:
        kiosks: dict[int, list[int]] = {k: [] for k in range(1, args.kiosks + 1)}
        for n in range(checkins):  # expert n is in batch n % B, whose kiosks are K(b+1), K(b+1+B) ...
            b = n % args.batches
            batch_kiosks = range(b + 1, args.kiosks + 1, args.batches)
            kiosks[batch_kiosks[(n // args.batches) % len(batch_kiosks)]].append(n)
        plan = Plan(
            target.address,
            proxy.address,
            5 if args.fault == "net-cut" else 0,
            s.batch_codes,
            "echo",
            args.pace,
            args.echo_s,
            0.0,
            kiosks,
            s.ids,
            s.band_uids,
            s.captures,
            s.liveness,  # sent as a kiosk sends them, whether the platform checks them or not
        )
        echo_calls_per_s = float("nan")
        echo_cpu: EchoCpu | None = None
        if args.mode == "flat":
            cpu_echo_before = target.cpu_seconds()
            _, counts, secs = run_kiosks(plan, args.client_processes)
            echo_calls_per_s = counts["echo_calls"] / secs
            echo_cpu = EchoCpu(cpu_echo_before, target.cpu_seconds(), counts["echo_calls"], secs)
        plan = dataclasses.replace(plan, mode=args.mode, duration_s=args.duration, heartbeat_s=args.heartbeat_s)
        fault_log: list[str] = []
        gateway_back: list[float] = []

        def inject(progress: Any) -> None:
            if args.fault == "none":
                return
            while progress.value < checkins * args.fault_at:
                time.sleep(0.05)
            fault_log.append(f"{time.monotonic():.1f} fault {args.fault} at {progress.value} check-ins")
            if args.fault == "net-cut":
                proxy.cut(3.0)
            elif args.fault == "gateway-offline":
                sim.set_offline(True)
                time.sleep(args.gateway_offline_s)
                sim.set_offline(False)
                gateway_back.append(time.time())
            else:
                target.fault(args.fault, fault_log)

        lock_before, cpu_before = target.write_lock(), target.cpu_seconds()
        out, counts, secs = run_kiosks(plan, args.client_processes, inject)
        lock_after, cpu_after = target.write_lock(), target.cpu_seconds()
        serving_cpus = target.serving_cpus()
        identify_server = target.identify_server_seconds()
        wait_uwb(target.url, 60)
        records = count_records(target.url, out["seen"], gateway_back[0] if gateway_back else None)
        records |= audit_records(target.url, key, 30)
    finally:
        target.stop()
        sim.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    floors_after = face_floors(s, kiosk_liveness=args.kiosk_liveness) if args.faces else None
    floor, per_identify, floor_figures = mean_floors(floors_before, floors_after)
    ok = counts.get("ok", 0)
    row = {
        "target": target.name,
        "mode": f"{args.mode} {'faces' if args.faces else 'ID-only'}"
        + (", liveness left to the kiosk" if args.faces and args.kiosk_liveness else "")
        + (f", {args.batches} batches" if args.batches > 1 else ""),
        "kiosks": args.kiosks,
        "fault": args.fault,
        "check_ins": ok,
        "planned": checkins,
        "seconds": round(secs, 1),
        "check_ins_per_s": round(ok / secs, 1),
        "identify_p50_ms": round(pct(out["identify"], 0.5), 1),
        "identify_p99_ms": round(pct(out["identify"], 0.99), 1),
        "complete_p50_ms": round(pct(out["complete"], 0.5), 1),
        "complete_p99_ms": round(pct(out["complete"], 0.99), 1),
        "echo_p50_ms": round(pct(out["echo"], 0.5), 2),
        "echo_p99_ms": round(pct(out["echo"], 0.99), 2),
        "echo_calls_per_s": round(echo_calls_per_s, 0),
        "heartbeat_s": args.heartbeat_s,
        "heartbeats": len(out["heartbeat"]),
        "heartbeat_p50_ms": round(pct(out["heartbeat"], 0.5), 1),
        "heartbeat_p99_ms": round(pct(out["heartbeat"], 0.99), 1),
        "faces_per_s": round(counts.get("faces", 0) / secs, 2),
        # The kiosks' client processes share the machine: what the load itself cost, beside the platform.
        "kiosk_cpu_ms_per_check_in": round(sum(out["kiosk_cpu_s"]) / ok * 1000, 2) if ok else float("nan"),
        "face_floor_ms": round(floor * 1000, 1),
        "identify_face_floor_ms": round(per_identify * 1000, 1),
        **floor_figures,
        "cores": cores,
        "face_queue": args.face_queue,
        "serving_cpus": serving_cpus,
        "failed_seen_by_kiosk": checkins - ok,
        **records,
        "counts": {k: v for k, v in counts.items() if k not in {"ok", "faces"}},
        "error_samples": out["error_samples"][:12],
        "fault_log": fault_log,
    }
    if identify_server:
        # How many identifies the serving processes themselves took longer than 10 and 25 ms over.
        row["identify_server_over_10ms"] = int(identify_server[float("inf")] - identify_server[0.01])
        row["identify_server_over_25ms"] = int(identify_server[float("inf")] - identify_server[0.025])
    if lock_before and lock_after and args.fault != "kill-platform":
        # The serving process's SQLite write lock over the check-ins (not across a restart: counts start again).
        txs = lock_after["transactions"] - lock_before["transactions"]
        held = lock_after["lock_held_seconds"] - lock_before["lock_held_seconds"]
        row["write_lock_busy"] = round(held / secs, 3)
        row["write_lock_ms_per_transaction"] = round(held / txs * 1000, 3) if txs else float("nan")
        row["write_transactions_per_check_in"] = round(txs / ok, 2) if ok else float("nan")
    row |= cpu_per_check_in(cpu_before, cpu_after, ok, args.fault)
    if args.mode == "flat":
        row["ratio_vs_echo_bound"] = round(ok / secs / (echo_calls_per_s / 2), 3)
        # Only where the check-ins' CPU was counted (cpu_per_check_in: no process restarted meanwhile).
        if echo_cpu is not None and cpu_before and cpu_after and "serving_cpu_ms_per_check_in" in row:
            row |= echo_cpu.against_check_ins(cpu_after["serving"] - cpu_before["serving"], ok, secs)
    else:
        row["ratio_identify_p99_vs_echo_p99"] = round(row["identify_p99_ms"] / row["echo_p99_ms"], 2)
    if args.faces:
        row["ratio_faces_vs_cores_over_floor"] = round(row["faces_per_s"] / (cores / floor), 3)
        # Against what the cores can do when every Identify also has its liveness checked.
        row["ratio_faces_vs_cores_over_identify_floor"] = round(row["faces_per_s"] / (cores / per_identify), 3)
    return row


@dataclasses.dataclass(frozen=True)
class EchoCpu:
    """The serving processes' CPU over the Echo bound's phase: what the check-ins' share of the bound is made of."""

    before: dict[str, float] | None
    after: dict[str, float] | None
    calls: int
    seconds: float

    def against_check_ins(self, serving_s: float, check_ins: int, seconds: float) -> dict[str, float]:
        """The share of the Echo bound taken apart: ratio = 2 ÷ (a check-in in Echo calls) × (cores ÷ Echo's cores).

        `serving_s`: the serving processes' CPU seconds over the `check_ins` done in `seconds`. A
        check-in's serving CPU counted in Echo calls' worth (k) and the serving processes' cores during
        the check-ins against those during Echo: check-ins/s ÷ (Echo calls/s ÷ 2) is exactly 2 ÷ k × that
        quotient. A serving process bound by its own CPU in both phases (quotient near 1) reaches 2 ÷ k;
        0.3 of the bound needs k at most 6.7 there. Nothing when the Echo phase's CPU could not be read.
        """
        if not self.before or not self.after or not self.calls or not check_ins:
            return {}
        echo_s = self.after["serving"] - self.before["serving"]
        per_echo = echo_s / self.calls
        if per_echo <= 0:
            return {}
        return {
            "serving_cpu_ms_per_echo_call": round(per_echo * 1000, 3),
            "serving_echo_calls_per_check_in": round(serving_s / check_ins / per_echo, 2),
            "serving_cores_echo": round(echo_s / self.seconds, 2),
            "serving_cores_check_ins": round(serving_s / seconds, 2),
        }


def cpu_per_check_in(
    before: dict[str, float] | None, after: dict[str, float] | None, check_ins: int, fault: str
) -> dict[str, float]:
    """What a check-in cost the platform's serving processes and their children, in ms of CPU.

    Nothing when a process could not be read or was restarted during the run (its counts start again).
    """
    if not before or not after or not check_ins or fault not in {"none", "gateway-offline", "net-cut"}:
        return {}
    return {
        f"{kind}_cpu_ms_per_check_in": round((after[kind] - before[kind]) / check_ins * 1000, 2)
        for kind in ("serving", "children")
    }


def print_row(row: dict[str, Any]) -> None:
    ratio = row.get("ratio_vs_echo_bound", row.get("ratio_identify_p99_vs_echo_p99"))
    if "ratio_faces_vs_cores_over_floor" in row:
        ratio = (
            f"{ratio}; faces {row['ratio_faces_vs_cores_over_floor']} of cores÷floor"
            f" ({row['cores']} ÷ {row['face_floor_ms']} ms),"
            f" {row['ratio_faces_vs_cores_over_identify_floor']} of cores÷identify floor"
            f" ({row['cores']} ÷ {row['identify_face_floor_ms']} ms)"
        )
        if "children_cpu_ms_per_check_in" in row:
            # Where the cores went, a check-in at a time: the faces' share is the floor against the sum.
            ratio += (
                f"; CPU ms a check-in: face workers and UWB {row['children_cpu_ms_per_check_in']},"
                f" serving {row['serving_cpu_ms_per_check_in']}, kiosks {row['kiosk_cpu_ms_per_check_in']}"
            )
    elif "serving_echo_calls_per_check_in" in row:
        # The ratio taken apart (EchoCpu): 2 ÷ k × the serving processes' cores against Echo's.
        ratio = (
            f"{ratio} = 2 ÷ {row['serving_echo_calls_per_check_in']} Echo calls of serving CPU a check-in"
            f" × {row['serving_cores_check_ins']} ÷ {row['serving_cores_echo']} serving cores"
        )
    print(json.dumps(row, ensure_ascii=False), flush=True)
    print(
        f"| {row['target']} | {row['mode']} | {row['kiosks']} | {row['fault']} | {row['check_ins']}/{row['planned']} |"
        f" {row['check_ins_per_s']} | {row['identify_p50_ms']:.0f} / {row['identify_p99_ms']:.0f} |"
        f" {row['complete_p50_ms']:.0f} / {row['complete_p99_ms']:.0f} | {row['faces_per_s']} |"
        f" {row['lost']} / {row['duplicated']} / {row['rooms_twice']} / {row['bands_twice']} | {row['uwb_late']} |"
        f" {row['failed_seen_by_kiosk']} | {ratio} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("sqlite", "postgres", "cluster"), default="sqlite")
    parser.add_argument("--mode", choices=("flat", "pace"), default="flat")
    parser.add_argument("--kiosks", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3, help="cluster: platform replicas behind HAProxy")
    parser.add_argument(
        "--batches", type=int, default=1, help="experts, rooms and kiosks dealt over this many batches (1: one batch)"
    )
    parser.add_argument("--checkins", type=int, default=2000, help="flat out: check-ins in the run")
    parser.add_argument("--pace", type=float, default=40.0, help="human pace: seconds between a kiosk's check-ins")
    parser.add_argument("--duration", type=float, default=80.0, help="human pace: seconds of the run")
    parser.add_argument("--faces", action="store_true", help="every check-in sends a face capture")
    parser.add_argument(
        "--kiosk-liveness",
        action="store_true",
        help="faces: the platform trusts the kiosks' liveness flag ([face] liveness = kiosk), not their frames",
    )
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument(
        "--standby",
        action="store_true",
        help="postgres, cluster: a synchronous streaming standby beside PostgreSQL (failover-postgres implies it)",
    )
    parser.add_argument("--fault-at", type=float, default=1 / 3, help="fraction of the check-ins done when it strikes")
    parser.add_argument("--gateway-offline-s", type=float, default=60.0, help="how long the UWB gateway is off")
    parser.add_argument("--echo-s", type=float, default=5.0, help="seconds of the Echo-bound phase")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--face-processes", type=int, default=-1, help="[face] processes per platform process")
    parser.add_argument(
        "--face-queue", type=int, help="[face] queue of each platform process (default: the platform's own)"
    )
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=5.0,
        help="each kiosk's heartbeat (with its context read) this often beside its check-ins, as the kiosk's"
        " [heartbeat] interval_s (default 5 s); 0: none, as the suite's runs before 7 December 2026, late morning",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, database)")
    parser.add_argument(
        "--platform-cpus",
        type=parse_cpus,
        help="run the platform (and PostgreSQL, HAProxy) on these CPUs only (a taskset list: 0 or 0-3) and the"
        " kiosks and the gateway simulator on the others, as if on machines of their own; cores = these",
    )
    args = parser.parse_args()
    if args.platform_cpus is not None and not os.sched_getaffinity(0) - args.platform_cpus:
        parser.error(f"--platform-cpus {sorted(args.platform_cpus)} leaves no CPU for the kiosks")
    if args.target == "sqlite" and (args.standby or args.fault == "failover-postgres"):
        parser.error("a standby and its failover are PostgreSQL's: use --target postgres or cluster")
    print(
        "| platform | run | kiosks | fault | check-ins done/planned | check-ins/s | identify p50/p99 ms |"
        " complete p50/p99 ms | faces/s | lost / dup / rooms twice / bands twice | bands late |"
        " failed at kiosk | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print_row(one_run(args))


if __name__ == "__main__":
    main()
