"""Console sign-in, CSRF and the one table of who may open which route.

Sessions are the accounts service's session tokens (in the database, so any replica accepts them and
they expire there); the cookie holds the token, HttpOnly and SameSite=Strict. The CSRF token is an
HMAC of the session token, so every replica can check it without shared memory and no other site can
know it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from platform_server.services.accounts import Permission

SESSION_COOKIE = "console_session"
CSRF_FIELD = "csrf"


def csrf_token(session_token: str) -> str:
    """The form token that goes with a session."""
    return hmac.new(session_token.encode("utf-8"), b"console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, submitted: str) -> bool:
    """True if the submitted form token belongs to this session."""
    return hmac.compare_digest(csrf_token(session_token), submitted)


@dataclass(frozen=True, slots=True)
class RouteRule:
    """What a route needs: a signed-in person with `permission` (None: public, no sign-in)."""

    path: str
    method: str
    permission: Permission | None
    signed_in: bool = True


# Who may open what: the one place. The tests walk this table with every role.
ROUTES: dict[str, RouteRule] = {
    "login_form": RouteRule("/login", "GET", None, signed_in=False),
    "login": RouteRule("/login", "POST", None, signed_in=False),
    "logout": RouteRule("/logout", "POST", None),
    "metrics": RouteRule("/metrics", "GET", None, signed_in=False),
    "batches": RouteRule("/", "GET", Permission.VIEW_BATCHES),
    "batch_create": RouteRule("/batches", "POST", Permission.MANAGE_BATCHES),
    "batch_close": RouteRule("/batches/{code}/close", "POST", Permission.MANAGE_BATCHES),
    "board": RouteRule("/batches/{code}", "GET", Permission.VIEW_STATISTICS),
    "board_stream": RouteRule("/batches/{code}/stream", "GET", Permission.STREAM_EVENTS),
    "steps_panel": RouteRule("/batches/{code}/steps", "GET", Permission.VIEW_STATISTICS),
    "upload_form": RouteRule("/batches/{code}/upload", "GET", Permission.MANAGE_BATCHES),
    "upload": RouteRule("/batches/{code}/upload", "POST", Permission.MANAGE_BATCHES),
    "template": RouteRule("/template/invitations.xlsx", "GET", Permission.VIEW_BATCHES),
    "experts": RouteRule("/batches/{code}/experts", "GET", Permission.MANAGE_BATCHES),
    "expert_page": RouteRule("/batches/{code}/experts/{invitation}", "GET", Permission.MANAGE_BATCHES),
    "expert_photo": RouteRule(
        "/batches/{code}/experts/{invitation}/photos/{position}.jpg", "GET", Permission.MANAGE_BATCHES
    ),
    "slip_look_up": RouteRule("/slips", "GET", Permission.MANAGE_BATCHES),
    "slip_reprint": RouteRule("/slips/{slip_code}/reprint", "POST", Permission.MANAGE_BATCHES),
    "batch_edit_form": RouteRule("/batches/{code}/edit", "GET", Permission.MANAGE_BATCHES),
    "batch_edit": RouteRule("/batches/{code}/edit", "POST", Permission.MANAGE_BATCHES),
    "annul": RouteRule("/batches/{code}/annul", "POST", Permission.MANAGE_BATCHES),
    "face_reset": RouteRule("/batches/{code}/face-reset", "POST", Permission.RESET_FACE_ATTEMPTS),
    "needs_staff": RouteRule("/batches/{code}/needs-staff", "GET", Permission.VIEW_STATISTICS),
    "needs_staff_panel": RouteRule("/batches/{code}/needs-staff/panel", "GET", Permission.VIEW_STATISTICS),
    "case_resolve": RouteRule("/batches/{code}/cases/{case_id}/resolve", "POST", Permission.MANAGE_BATCHES),
    "case_annul": RouteRule("/batches/{code}/cases/{case_id}/annul", "POST", Permission.MANAGE_BATCHES),
    "case_resend": RouteRule("/batches/{code}/cases/{case_id}/resend", "POST", Permission.MANAGE_BATCHES),
    "case_face_reset": RouteRule("/batches/{code}/cases/{case_id}/face-reset", "POST", Permission.RESET_FACE_ATTEMPTS),
    "fleet": RouteRule("/fleet", "GET", Permission.VIEW_STATISTICS),
    "fleet_panel": RouteRule("/fleet/panel", "GET", Permission.VIEW_STATISTICS),
    "alert_ack": RouteRule("/fleet/alerts/{alert_id}/acknowledge", "POST", Permission.MANAGE_BATCHES),
    "kiosk_disable": RouteRule("/fleet/kiosks/{kiosk_id}/disable", "POST", Permission.MANAGE_BATCHES),
    "kiosk_enable": RouteRule("/fleet/kiosks/{kiosk_id}/enable", "POST", Permission.MANAGE_BATCHES),
    "export_check_ins": RouteRule("/batches/{code}/export/check-ins.csv", "GET", Permission.EXPORT_CHECK_INS),
    "export_fees": RouteRule("/batches/{code}/export/fees.csv", "GET", Permission.EXPORT_FEES),
    "audit_export": RouteRule("/audit/export.csv", "GET", Permission.READ_AUDIT),
    "export_fees_full": RouteRule("/batches/{code}/export/fees-full.csv", "GET", Permission.SEE_FULL_NUMBERS),
}
