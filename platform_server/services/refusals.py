"""Refusals: a reason code the kiosk picks its screen by, placeholders, and the platform's own wording."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why the platform said no (mirrors expertcheckin.v1.RefusalReason without the prefix)."""

    NOT_INVITED = "NOT_INVITED"
    FACE_MISMATCH = "FACE_MISMATCH"
    FACE_NOT_USABLE = "FACE_NOT_USABLE"
    ID_CARD_EXPIRED = "ID_CARD_EXPIRED"
    ID_CARD_INVALID = "ID_CARD_INVALID"
    BATCH_NOT_OPEN = "BATCH_NOT_OPEN"
    BATCH_CLOSED = "BATCH_CLOSED"
    ALREADY_CHECKED_IN = "ALREADY_CHECKED_IN"
    NO_REFERENCE_PHOTO = "NO_REFERENCE_PHOTO"
    NO_ROOM_LEFT = "NO_ROOM_LEFT"
    BAND_UNKNOWN = "BAND_UNKNOWN"
    BAND_NOT_AVAILABLE = "BAND_NOT_AVAILABLE"
    BANK_CARD_INVALID = "BANK_CARD_INVALID"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_UNDECODABLE = "IMAGE_UNDECODABLE"
    IDENTIFICATION_EXPIRED = "IDENTIFICATION_EXPIRED"
    ANNUL_NOT_ALLOWED = "ANNUL_NOT_ALLOWED"
    CHECK_IN_NOT_FOUND = "CHECK_IN_NOT_FOUND"
    KIOSK_NOT_REGISTERED = "KIOSK_NOT_REGISTERED"
    FACE_ATTEMPTS_EXHAUSTED = "FACE_ATTEMPTS_EXHAUSTED"
    NOT_LIVE = "NOT_LIVE"


# Simplified Chinese first, English second; {placeholders} are filled from the refusal's params.
MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.NOT_INVITED: ("您不在本批次邀请专家名单内", "You are not on the invited list for this evaluation"),
    Reason.FACE_MISMATCH: (
        "人脸核验未通过，请摘下帽子或眼镜后重试（第{attempt}次，共{max_attempts}次）",
        "Your face did not match. Please remove a hat or glasses and try again ({attempt} of {max_attempts})",
    ),
    Reason.FACE_NOT_USABLE: ("未能识别人脸，请本人正对摄像头", "Please face the camera yourself"),
    Reason.ID_CARD_EXPIRED: (
        "身份证已过有效期，请联系现场工作人员",
        "This ID card has expired. Please ask a member of staff",
    ),
    Reason.ID_CARD_INVALID: ("未能读取身份证，请重新放置", "The ID card could not be read. Please place it again"),
    Reason.BATCH_NOT_OPEN: (
        "本批次签到尚未开始（{start}开始）",
        "Check-in for this evaluation has not started (opens {start})",
    ),
    Reason.BATCH_CLOSED: ("本批次签到已结束", "Check-in for this evaluation has closed"),
    Reason.ALREADY_CHECKED_IN: (
        "您已于{time}在{kiosk}完成签到，房间{room}",
        "You checked in at {time} at {kiosk}. Your room is {room}",
    ),
    Reason.NO_REFERENCE_PHOTO: (
        "请联系现场工作人员完成人工核验",
        "Please ask a member of staff to confirm your identity",
    ),
    Reason.NO_ROOM_LEFT: ("房间已分配完毕，请联系现场工作人员", "All rooms are taken. Please ask a member of staff"),
    Reason.BAND_UNKNOWN: (
        "手环发放遇到问题，请联系现场工作人员",
        "There was a problem with your wristband. Please ask a member of staff",
    ),
    Reason.BAND_NOT_AVAILABLE: (
        "手环发放遇到问题，请联系现场工作人员",
        "There was a problem with your wristband. Please ask a member of staff",
    ),
    Reason.BANK_CARD_INVALID: ("卡号有误，请核对后重新输入", "That card number is not valid. Please check it"),
    Reason.SIGNATURE_INVALID: ("请先签名", "Please sign first"),
    Reason.IMAGE_TOO_LARGE: (
        "照片过大（上限{max_bytes}字节），请重试",
        "The photo is too large (limit {max_bytes} bytes). Please try again",
    ),
    Reason.IMAGE_UNDECODABLE: ("照片无法识别，请重试", "The photo could not be read. Please try again"),
    Reason.IDENTIFICATION_EXPIRED: (
        "身份核验已超时，请重新开始",
        "Your identity check has timed out. Please start again",
    ),
    Reason.ANNUL_NOT_ALLOWED: (
        "无法撤销该签到，请联系现场工作人员",
        "This check-in cannot be undone here. Please ask staff",
    ),
    Reason.CHECK_IN_NOT_FOUND: ("未找到该签到记录", "That check-in was not found"),
    Reason.KIOSK_NOT_REGISTERED: ("设备维护中，暂停服务", "Temporarily out of service"),
    Reason.FACE_ATTEMPTS_EXHAUSTED: (
        "身份核验未通过，请联系现场工作人员",
        "We could not confirm your identity. Please ask a member of staff",
    ),
    Reason.NOT_LIVE: (
        "未检测到真人，请本人正对摄像头并按提示动作",
        "We could not see a live person. Please face the camera yourself and follow the prompt",
    ),
}


class _Keep(dict[str, str]):
    """format_map helper that leaves an unknown {placeholder} as it is rather than failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal fit for the screen: the code, its placeholders and the rendered wording."""

    reason: Reason
    params: dict[str, str] = field(default_factory=dict)

    @property
    def message_zh(self) -> str:
        """The Chinese wording with the placeholders filled in."""
        return MESSAGES[self.reason][0].format_map(_Keep(self.params))

    @property
    def message_en(self) -> str:
        """The English wording with the placeholders filled in."""
        return MESSAGES[self.reason][1].format_map(_Keep(self.params))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the idempotency record."""
        return {"reason": self.reason.value, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Refusal:
        """Inverse of to_dict()."""
        params = data.get("params") or {}
        return cls(Reason(str(data["reason"])), {str(k): str(v) for k, v in dict(params).items()})  # type: ignore[call-overload]
