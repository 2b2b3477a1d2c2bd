"""Optional API keys, sent as `Authorization: Bearer <key>`.

`SMS_API_KEYS` may call the inference routes and read the model list; `SMS_ADMIN_KEYS` may
also load and unload models (the repository extension). With no keys set, everything is open.
Health, readiness and metrics stay open unless SMS_PROTECT_OBSERVABILITY is set; the demo page,
the docs and the OpenAPI schema are always open (they hold nothing private, and the page says
when a key is needed). Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from typing import Literal

Access = Literal["open", "api", "admin"]

_OBSERVABILITY = ("/healthz", "/readyz", "/metrics", "/v2/health/")
_ADMIN = ("/v2/repository",)
_API = ("/predict/", "/noop/", "/models", "/v2")


def required_access(path: str, protect_observability: bool) -> Access:
    """What a request to `path` needs (by prefix; unknown paths are open and answer 404)."""
    if path.startswith(_OBSERVABILITY):
        return "api" if protect_observability else "open"
    if path.startswith(_ADMIN):
        return "admin"
    if path.startswith(_API):
        return "api"
    return "open"


class KeyRing:
    def __init__(self, api_keys: list[str], admin_keys: list[str]) -> None:
        self._api = [key.encode() for key in api_keys if key]
        self._admin = [key.encode() for key in admin_keys if key]
        self.enabled = bool(self._api or self._admin)

    def grants(self, authorization: bytes | None) -> Access | None:
        """What the presented credentials allow: "admin", "api", or None (missing/wrong)."""
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return None
        presented = authorization[7:].strip()
        # Every key is compared, and in constant time, so timing tells nothing of any key.
        admin = any([hmac.compare_digest(presented, key) for key in self._admin])
        api = any([hmac.compare_digest(presented, key) for key in self._api])
        return "admin" if admin else "api" if api else None

    def refusal(self, needed: Access, authorization: bytes | None) -> tuple[int, str] | None:
        """None when the request may go on, else (status, message): 401 for a missing or
        wrong key, 403 for an API key on an admin route."""
        if needed == "open" or not self.enabled:
            return None
        granted = self.grants(authorization)
        if granted is None:
            what = "missing" if authorization is None else "wrong or malformed"
            return 401, f"API key {what}: send `Authorization: Bearer <key>`"
        if needed == "admin" and granted != "admin":
            return 403, "this route needs an admin key (SMS_ADMIN_KEYS)"
        return None
