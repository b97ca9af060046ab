"""Bearer token expiry maths (pure logic, injected clock)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    obtained_at: float  # our clock when the token arrived
    expires_in: float  # lifetime the platform announced, seconds

    @property
    def expires_at(self) -> float:
        # Counted from our own receipt time: the platform's issued_at comes
        # from another clock, and a token is never older than our receipt.
        return self.obtained_at + self.expires_in

    def needs_refresh(self, now: float, margin: float) -> bool:
        """True once fewer than ``margin`` seconds of life remain.

        The margin is capped at a tenth of the lifetime so that a platform
        handing out short tokens does not make us refresh before every call.
        """
        return now >= self.expires_at - min(margin, self.expires_in / 10)

    @classmethod
    def from_payload(cls, payload: object, now: float) -> "Token":
        """Build from the ``POST /auth/token`` JSON; ValueError says what is wrong."""
        if not isinstance(payload, dict):
            raise ValueError("token response is not a JSON object")
        value = payload.get("access_token")
        if not isinstance(value, str) or not value:
            raise ValueError("token response has no access_token")
        if str(payload.get("token_type", "Bearer")).lower() != "bearer":
            raise ValueError("token response is not a Bearer token")
        try:
            expires_in = float(payload.get("expires_in", 3600))
        except (TypeError, ValueError):
            raise ValueError("token response has a non-numeric expires_in") from None
        if not expires_in > 0:
            raise ValueError("token response has a non-positive expires_in")
        return cls(value=value, obtained_at=now, expires_in=expires_in)
