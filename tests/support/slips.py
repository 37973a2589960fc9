"""One check-in slip's content, already masked, as the platform hands it to a kiosk's printer."""

from __future__ import annotations

from receipt_printer.slip_layout import SlipContent

EXAMPLE_SLIP = SlipContent(
    batch_code="B1",
    batch_name="市政工程评标",
    expert_name="张伟",
    id_number_masked="1101**********0010",
    kiosk_id="K1",
    slip_serial=7,
    checked_in_at="2026-03-09 08:15",
    hotel_name="国际饭店",
    room_number="1201",
    evaluation_venue="第2评标室",
    evaluation_start="2026-03-09 09:30",
    band_tag_id="204C",
    card_masked="621234******1232",
    slip_code="K7M2P9QX",
)
