"""Plain domain values the flow exchanges with the platform client, the queue and the devices.

Personal data (ID number, card number, face images, signature) sits in fields with repr=False, so a
stray log line or traceback never prints it in clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypeAlias

from personal_data import bank_card

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping


class RefusalCode(StrEnum):
    """Why the platform (or the kiosk itself) said no; values are the text keys' suffixes."""

    UNSPECIFIED = "unknown"
    NOT_INVITED = "not_invited"
    FACE_MISMATCH = "face_mismatch"
    FACE_NOT_USABLE = "face_not_usable"
    ID_CARD_EXPIRED = "id_card_expired"
    ID_CARD_INVALID = "id_card_invalid"
    BATCH_NOT_OPEN = "batch_not_open"
    BATCH_CLOSED = "batch_closed"
    ALREADY_CHECKED_IN = "already_checked_in"
    NO_REFERENCE_PHOTO = "no_reference_photo"
    NO_ROOM_LEFT = "no_room_left"
    BAND_UNKNOWN = "band_unknown"
    BAND_NOT_AVAILABLE = "band_not_available"
    BANK_CARD_INVALID = "bank_card_invalid"
    SIGNATURE_INVALID = "signature_invalid"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_UNDECODABLE = "image_undecodable"
    IDENTIFICATION_EXPIRED = "identification_expired"
    ANNUL_NOT_ALLOWED = "annul_not_allowed"
    CHECK_IN_NOT_FOUND = "check_in_not_found"
    KIOSK_NOT_REGISTERED = "kiosk_not_registered"
    FACE_ATTEMPTS_EXHAUSTED = "face_attempts_exhausted"
    # Kiosk-side reasons (no platform code)
    NOT_LIVE = "not_live"
    PLATFORM_UNAVAILABLE = "platform_unavailable"
    PLATFORM_BUSY = "platform_busy"
    DEVICE_UNAVAILABLE = "device_unavailable"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal fit for a screen: a code, its placeholders, and the platform's own wording."""

    code: RefusalCode
    params: Mapping[str, str] = field(default_factory=dict)
    message_zh: str = ""
    message_en: str = ""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """The open evaluation batch this kiosk serves, for the home screen and the done screen."""

    code: str
    name: str
    venue: str = ""
    hotel_name: str = ""
    evaluation_start: dt.datetime | None = None
    check_in_opens: dt.datetime | None = None
    closed: bool = False
    allow_id_only: bool = False


@dataclass(frozen=True, slots=True)
class KioskContext:
    """GetKioskContext's answer: the batch (None when none is open) and the platform's clock."""

    batch: BatchInfo | None
    server_time: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class IdCardFields:
    """The ID card's text fields as the platform's IdentifyExpert takes them (dates YYYYMMDD)."""

    id_number: str = field(repr=False)
    name: str = field(repr=False)
    sex_code: str = ""
    nation_code: str = ""
    birth_date: str = ""
    address: str = field(default="", repr=False)
    issuing_authority: str = ""
    valid_from: str = ""
    valid_to: str = ""  # YYYYMMDD or 长期


@dataclass(frozen=True, slots=True)
class FaceFrames:
    """What the camera session hands over: 1-3 best JPEG frames, a quality score and liveness."""

    images_jpeg: tuple[bytes, ...] = field(repr=False)
    quality: float
    liveness_passed: bool
    challenge: str = ""  # blink / turn_left / turn_right: the challenge the capture ran
    challenge_id: str = ""
    challenge_frames: tuple[tuple[bytes, int], ...] = field(repr=False, default=())  # (JPEG, ms since shown)


@dataclass(frozen=True, slots=True)
class IdentifyRequest:
    """One IdentifyExpert call; the request id is kept across transport retries."""

    request_id: str
    batch_code: str
    id_card: IdCardFields
    faces: tuple[bytes, ...] = field(repr=False)
    face_quality: float
    liveness_passed: bool
    face_attempt: int
    challenge: str = ""
    challenge_id: str = ""
    challenge_frames: tuple[tuple[bytes, int], ...] = field(repr=False, default=())


@dataclass(frozen=True, slots=True)
class CardOnFile:
    """A bank card the platform already holds for the expert, masked first 6 / last 4."""

    pan_masked: str
    bank_name: str


@dataclass(frozen=True, slots=True)
class Identified:
    """IdentifyExpert said yes: the token CompleteCheckIn needs and what the screens may show."""

    identification_token: str = field(repr=False)
    expert_name: str = field(repr=False)
    id_number_masked: str
    organisation: str = ""
    card_on_file: CardOnFile | None = None
    face_attempts_left: int = 0


@dataclass(frozen=True, slots=True)
class Refused:
    """A call the platform answered with a refusal; the platform's needs-staff case for it, if it opened one."""

    refusal: Refusal
    needs_staff_case_id: str = ""


IdentifyResult: TypeAlias = Identified | Refused


class CardSource(StrEnum):
    """Where a bank card number came from at the kiosk."""

    CHIP = "chip"
    CONTACTLESS = "contactless"
    SWIPE = "swipe"
    TYPED = "typed"
    ON_FILE = "on_file"


@dataclass(frozen=True, slots=True)
class NewCard:
    """A bank card read or typed at the kiosk; the PAN is digits only and Luhn-valid."""

    pan: str = field(repr=False)
    source: CardSource
    expiry_yymm: str | None = None
    holder_name: str | None = field(default=None, repr=False)

    @property
    def masked(self) -> str:
        """First 6 / last 4, the most a screen may show."""
        return bank_card.mask(self.pan)


class DispenseState(StrEnum):
    """What became of the band when a CompleteCheckIn is sent (the platform honours replays late)."""

    LIVE = "live"  # the band waits at the reader for the answer
    HANDED_OUT = "handed_out"  # replay: the band left the arm without an answer
    UNKNOWN = "unknown"  # replay of an orphan: the kiosk died mid-dispense


@dataclass(frozen=True, slots=True)
class CompleteRequest:
    """One CompleteCheckIn call: band, card (None = the card on file) and signature."""

    request_id: str
    identification_token: str = field(repr=False)
    new_card: NewCard | None
    signature_png: bytes = field(repr=False)
    band_uid: str
    #: LIVE from the flow; the queue's replay says the band left the arm (or may have).
    dispense: DispenseState = DispenseState.LIVE


@dataclass(frozen=True, slots=True)
class CheckInInfo:
    """A completed check-in as the done screen shows it (no full ID or card number)."""

    check_in_id: str
    hotel_name: str = ""
    hotel_address: str = ""
    room_number: str = ""
    evaluation_venue: str = ""
    evaluation_start: dt.datetime | None = None
    checked_in_at: dt.datetime | None = None
    kiosk_id: str = ""
    needs_staff: bool = False
    # For the printed slip (签到凭证): masked ID, the band's UWB id, the verification code and number.
    batch_code: str = ""
    id_number_masked: str = ""
    uwb_tag_id: str = ""
    slip_code: str = ""
    slip_serial: int = 0


@dataclass(frozen=True, slots=True)
class Completed:
    """CompleteCheckIn said yes; `replayed` when the platform had answered this request id before."""

    check_in: CheckInInfo
    replayed: bool = False
    needs_staff_case_id: str = ""  # a band of unknown fate: the platform's case for staff


CompleteResult: TypeAlias = Completed | Refused


@dataclass(frozen=True, slots=True)
class QueuedRecordInfo:
    """One record of the kiosk's durable queue as staff mode lists it (no card number, no token)."""

    request_id: str
    state: str  # in_flight | deliver | annul | orphaned | refused (checkin.pending_queue.RecordState)
    band_uid: str
    problem: str  # the refusal code, or the last error of a replay
    case_id: str  # the platform's needs-staff case, once it opened one
    attempts: int
    since: str  # UTC, "YYYY-MM-DD HH:MM:SS"


class AnnulReason(StrEnum):
    """Why the kiosk undoes a check-in it just made."""

    BAND_NOT_TAKEN = "band_not_taken"
    DISPENSE_FAILED = "dispense_failed"
    BAND_UNREADABLE = "band_unreadable"
    EXPERT_CANCELLED = "expert_cancelled"


@dataclass(frozen=True, slots=True)
class AnnulRequest:
    """One AnnulCheckIn call."""

    request_id: str
    check_in_id: str
    reason: AnnulReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Annulled:
    """AnnulCheckIn said yes."""


AnnulResult: TypeAlias = Annulled | Refused


class DeviceState(StrEnum):
    """Health of one device, as heartbeats report it."""

    OK = "ok"
    DEGRADED = "degraded"
    FAULT = "fault"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One device's health line: its name (id_card_reader, camera, arm, ...), state and detail."""

    device: str
    state: DeviceState
    detail: str = ""

    @property
    def usable(self) -> bool:
        """True when the device can serve an expert (OK or merely degraded)."""
        return self.state in {DeviceState.OK, DeviceState.DEGRADED}


@dataclass(frozen=True, slots=True)
class HeartbeatReport:
    """What a heartbeat tells the platform."""

    devices: tuple[DeviceHealth, ...]
    band_stock: int
    pending_check_ins: int
    out_of_service: bool
    software_version: str
    kiosk_time: dt.datetime
    #: The receipt printer's paper: "", ok, near_end, out (checkin.flow.printing.PaperState).
    printer_paper: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """The platform's answer to a heartbeat: with the kiosk's context, unless the platform predates it."""

    server_time: dt.datetime | None
    stock_low: bool
    context: KioskContext | None = None


@dataclass(frozen=True, slots=True)
class KioskEvent:
    """A kiosk-side step or failure for the platform's audit log (never personal data in clear)."""

    request_id: str
    event: str
    outcome: str
    occurred_at: dt.datetime
    detail: str = ""
    id_number_hint: str = ""  # empty, or the last 4 characters only


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """The kiosk's view of whether it can serve: platform reachable, devices, batch and stock."""

    platform_reachable: bool
    devices: tuple[DeviceHealth, ...] = ()
    batch: BatchInfo | None = None
    band_stock: int | None = None

    def problems(self) -> tuple[str, ...]:
        """Codes of what stops service, for the out-of-service screen and the log; empty when fine."""
        codes: list[str] = []
        if not self.platform_reachable:
            codes.append("platform_unreachable")
        codes.extend(f"{d.device}_{d.state.value}" for d in self.devices if not d.usable)
        if self.platform_reachable and self.batch is None:
            codes.append("no_open_batch")
        if self.band_stock is not None and self.band_stock <= 0:
            codes.append("band_stock_empty")
        return tuple(codes)
