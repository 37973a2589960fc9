"""Exceptions of the uwb package: one root, a few leaves a caller can act on."""

from __future__ import annotations


class UwbError(Exception):
    """Root of every error raised by the uwb package."""


class PayloadError(UwbError):
    """A room-assignment payload cannot be built or decoded (bad field, length, version or check value)."""


class ProtocolError(UwbError):
    """A gateway frame or TLV is malformed, or a response does not match the request."""


class GatewayError(UwbError):
    """The gateway could not carry out a command."""


class GatewayOfflineError(GatewayError):
    """The gateway cannot be opened or did not answer within the timeout after the bounded retries."""


class GatewayBusyError(GatewayError):
    """The gateway answered busy (rv 4) on every bounded retry: its downlink queue is full."""


class GatewayRejectedError(GatewayError):
    """The gateway refused a command with a return value other than ok or busy."""

    def __init__(self, message: str, return_value: int) -> None:
        super().__init__(message)
        self.return_value = return_value


class TagError(UwbError):
    """A downlink to a tag ended without the tag's acknowledgement of exactly what was sent."""

    def __init__(self, message: str, tag_id: int) -> None:
        super().__init__(message)
        self.tag_id = tag_id


class TagOutOfRangeError(TagError):
    """The gateway did not hear the tag during its delivery window."""


class TagNoAckError(TagError):
    """The tag was heard but its acknowledgement never reached the gateway during the delivery window."""


class TagNackError(TagError):
    """The tag refused the payload (check value or tag id wrong), or acknowledged different data."""


class DeliveryTimeoutError(TagError):
    """The host's deadline passed while the gateway was still trying to deliver (a slow tag)."""


class DeliverySupersededError(TagError):
    """The downlink was replaced by a newer one to the same tag before it was delivered."""


class DeliveryLostError(TagError):
    """The gateway no longer knows the downlink (it restarted); the host must send again."""
