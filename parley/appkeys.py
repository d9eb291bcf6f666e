"""Secrets of apps: tokens, signing secrets, webhook and upload URLs.

Rules of this file:

* Every secret is random (``secrets``) or derived with HMAC-SHA256 from the
  server secret; nothing secret is stored in the clear.  Tokens and webhook
  secrets are stored as sha256 hex digests and compared in constant time.
* Tokens are ``<prefix>-<workspace id>-<token id>-<secret>``, in the style
  of Slack's (``xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy``):
  the workspace id routes to the shard and the token id is the primary key,
  so authenticating is one probe, never a lookup by the secret.
* A signing secret (what Slack signs its requests to an app with, and what
  part 2 will sign Events API deliveries with) is
  ``HMAC(key, app id : salt)`` with a key derived from the server secret.
  The store keeps only the salt, so rotating is drawing a new salt; a
  database dump alone does not reveal it.  Changing the server secret
  (``jwt_secret``) therefore changes every signing secret: rotate them
  (``POST .../signing-secret``) after it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass

TOKEN_SECRET_CHARS = 32  # base62 characters: about 190 bits
SALT_BYTES = 16
SIGNING_SECRET_HEX = 32  # Slack's signing secrets are 32 hex digits
_ALPHABET = string.ascii_letters + string.digits
_ID_MAX = 2**63 - 1

BOT_TOKEN_PREFIX = "xoxb"  # noqa: S105 - a token kind, not a secret
APP_TOKEN_PREFIX = "xapp"  # noqa: S105
USER_TOKEN_PREFIX = "xoxp"  # noqa: S105
PREFIX_OF_KIND = {"bot": BOT_TOKEN_PREFIX, "app": APP_TOKEN_PREFIX, "user": USER_TOKEN_PREFIX}
KIND_OF_PREFIX = {v: k for k, v in PREFIX_OF_KIND.items()}


def random_secret(n: int = TOKEN_SECRET_CHARS) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    kind: str  # 'bot' | 'app' | 'user'
    workspace_id: int
    token_id: int
    secret: str


def make_token(kind: str, workspace_id: int, token_id: int, secret: str) -> str:
    return f"{PREFIX_OF_KIND[kind]}-{workspace_id}-{token_id}-{secret}"


def _id(raw: str) -> int | None:
    if not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= _ID_MAX else None


def parse_token(token: str) -> ParsedToken | None:
    """The parts of a token of ours, or None for anything else (which then
    answers ``invalid_auth`` without touching the database)."""
    parts = token.split("-", 3)
    if len(parts) != 4 or parts[0] not in KIND_OF_PREFIX:
        return None
    workspace_id, token_id = _id(parts[1]), _id(parts[2])
    secret = parts[3]
    if (workspace_id is None or token_id is None or len(secret) != TOKEN_SECRET_CHARS
            or any(ch not in _ALPHABET for ch in secret)):
        return None
    return ParsedToken(KIND_OF_PREFIX[parts[0]], workspace_id, token_id, secret)


class AppKeys:
    """Derivations from the server secret (built at the composition root)."""

    def __init__(self, server_secret: str) -> None:
        root = server_secret.encode()
        # Separate keys per purpose, so one derivation can never be replayed as another.
        self._signing = hmac.new(root, b"parley-app-signing-secret-v1", hashlib.sha256).digest()
        self._upload = hmac.new(root, b"parley-app-upload-url-v1", hashlib.sha256).digest()

    def signing_secret(self, app_id: int, salt: str) -> str:
        mac = hmac.new(self._signing, f"{app_id}:{salt}".encode(), hashlib.sha256)
        return mac.hexdigest()[:SIGNING_SECRET_HEX]

    def upload_signature(self, workspace_id: int, file_id: int, expires_at: int) -> str:
        mac = hmac.new(self._upload, f"{workspace_id}:{file_id}:{expires_at}".encode(),
                       hashlib.sha256)
        return mac.hexdigest()

    def upload_ticket(self, workspace_id: int, file_id: int, ttl_s: int,
                      now: float | None = None) -> str:
        """``<workspace>.<file>.<expiry unix s>.<signature>``: the path segment
        of a ``files.getUploadURLExternal`` upload URL."""
        exp = int((time.time() if now is None else now) + ttl_s)
        return f"{workspace_id}.{file_id}.{exp}.{self.upload_signature(workspace_id, file_id, exp)}"

    def check_upload_ticket(self, ticket: str, now: float | None = None) -> tuple[int, int] | None:
        """(workspace id, file id) of a valid, unexpired ticket, else None."""
        parts = ticket.split(".")
        if len(parts) != 4:
            return None
        ws, fid = _id(parts[0]), _id(parts[1])
        if ws is None or fid is None or not parts[2].isdigit() or len(parts[2]) > 12:
            return None
        exp = int(parts[2])
        if exp < (time.time() if now is None else now):
            return None
        if not hmac.compare_digest(self.upload_signature(ws, fid, exp), parts[3]):
            return None
        return ws, fid
