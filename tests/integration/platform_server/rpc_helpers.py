"""Request builders shared by the platform's integration tests."""

from __future__ import annotations

import uuid

from expertcheckin.v1 import common_pb2, kiosk_pb2

from tests.unit.platform_server.support import luhn_pan, signature_png

SIGNATURE = signature_png()


def rid() -> str:
    return uuid.uuid4().hex


def identify_request(
    kiosk: str, batch: str, id_number: str, faces: list[bytes] | None = None, request_id: str | None = None
) -> kiosk_pb2.IdentifyExpertRequest:
    return kiosk_pb2.IdentifyExpertRequest(
        request_id=request_id or rid(),
        kiosk_id=kiosk,
        batch_code=batch,
        id_card=kiosk_pb2.IdCardData(id_number=id_number, name="专家", valid_to="长期"),
        faces=[kiosk_pb2.FaceCapture(image_jpeg=f, quality=0.9) for f in faces or []],
        liveness_passed=True,
        face_attempt=1,
    )


def complete_request(
    kiosk: str, token: str, band_uid: str, *, pan: str | None = None, request_id: str | None = None
) -> kiosk_pb2.CompleteCheckInRequest:
    return kiosk_pb2.CompleteCheckInRequest(
        request_id=request_id or rid(),
        kiosk_id=kiosk,
        identification_token=token,
        new_card=kiosk_pb2.NewBankCard(pan=pan or luhn_pan(), source=common_pb2.CARD_SOURCE_CHIP),
        signature_png=SIGNATURE,
        band_uid=band_uid,
    )
