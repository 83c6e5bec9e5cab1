"""API keys as bearer tokens: inference keys for predict, a separate admin key for the admin API.

``auth="auto"`` (the default) turns auth on whenever keys are configured or the server
listens beyond loopback; on loopback with no keys it is off and the server logs that
loudly. ``auth="on"`` without keys refuses to start; ``auth="off"`` is the explicit
switch for local use (the demo uses it).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from enum import Enum

from fastapi import HTTPException, Request

from cloud_server.settings import CloudSettings
from shared.errors import ConfigError

__all__ = ["Access", "KeyRing", "keyring_from"]

log = logging.getLogger("cloud_server")


class Access(Enum):
    INFERENCE = "inference"
    ADMIN = "admin"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class KeyRing:
    enabled: bool
    inference: tuple[str, ...]
    admin: tuple[str, ...]

    def check(self, request: Request, access: Access) -> None:
        """Raise 401 without a key, 403 with a key of the wrong kind."""
        if not self.enabled:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401,
                "missing API key: send `Authorization: Bearer <key>` (devtune predict --api-key KEY)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        is_admin = any(hmac.compare_digest(token, key) for key in self.admin)
        is_user = any(hmac.compare_digest(token, key) for key in self.inference)
        if access is Access.ADMIN and not is_admin:
            raise HTTPException(403, "this endpoint needs an admin key; inference keys cannot manage models"
                                if is_user else "API key not recognised; check DEVTUNE_CLOUD_ADMIN_KEYS")
        if access is Access.INFERENCE and not (is_user or is_admin):
            raise HTTPException(403, "API key not recognised; check the key the server was given")


def keyring_from(settings: CloudSettings) -> KeyRing:
    inference, admin = list(settings.api_keys), list(settings.admin_keys)
    if settings.keys_file is not None:
        try:
            stored = json.loads(settings.keys_file.read_text())
            inference += list(stored.get("inference", []))
            admin += list(stored.get("admin", []))
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"cannot read keys file {settings.keys_file} ({exc}); it must be JSON like "
                '{"inference": ["..."], "admin": ["..."]}'
            ) from exc
    mode = settings.auth
    if mode == "auto":
        mode = "on" if inference or admin or not _is_loopback(settings.host) else "off"
        if mode == "off":
            log.warning("AUTH IS OFF: no API keys configured and listening on loopback %s only", settings.host)
    if mode == "off":
        return KeyRing(False, (), ())
    if not inference:
        raise ConfigError(
            "auth is on but no inference API key is configured: set DEVTUNE_CLOUD_API_KEYS (JSON list) "
            "or DEVTUNE_CLOUD_KEYS_FILE, or switch auth off explicitly with DEVTUNE_CLOUD_AUTH=off"
        )
    return KeyRing(True, tuple(inference), tuple(admin))
