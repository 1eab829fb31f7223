"""Errors that reach a caller: each names the field it is about."""

from __future__ import annotations


class BadRequest(ValueError):
    """Input that breaks a rule; the message starts with the field path.

    Front ends map it to INVALID_ARGUMENT (gRPC) or 400 (HTTP) and send the
    message unchanged, e.g. ``request.imp[0].banner.w must be positive``.
    """

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path} {rule}" if path else rule)
        self.path = path
        self.rule = rule


class NotFound(LookupError):
    """A well-formed reference to something the exchange does not know."""


class Forbidden(PermissionError):
    """A well-formed request this exchange did not authorise (a forged notice)."""


class Conflict(ValueError):
    """Contradicts what is already recorded (a notice with another price); refused."""
