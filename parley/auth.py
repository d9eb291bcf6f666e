"""Passwords (argon2id), access tokens (JWT, HS256 pinned) and connect tickets.

Access tokens carry ``sub`` (user id), ``sid`` (auth session id), ``iss``,
``aud``, ``iat`` and ``exp``; all are required on verification and the
algorithm is pinned, so ``alg: none`` or an RS/HS confusion cannot pass.
A token is only as good as its session: revoking the session (log out) or
deactivating the user makes the gateway close the sockets and the API refuse
the token, before ``exp``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from parley.errors import Unauthenticated

JWT_ALGORITHM = "HS256"  # pinned: verification accepts nothing else
TICKET_TTL_S = 30.0  # connect tickets are for an immediate upgrade
TICKET_BYTES = 32  # 256 bits of randomness

# argon2id with the library's RFC 9106 "low memory" profile (64 MiB, t=3):
# a deliberate cost, paid on register and login only.
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the verified content of an access token or ticket, or
    of an app's token (``parley.actions.apps.authenticate``).

    For an app, ``user_id`` is its bot's account, ``session_id`` the token's
    id, and ``app_id`` / ``bot_id`` name the app: actions use them to mark
    what the bot posts and to apply the one rule that differs for bots (they
    read only the channels they are in; see ``channels.readable_channel``).
    """

    user_id: int
    session_id: int
    expires_at: float  # unix seconds
    app_id: int | None = None  # set only for an app's token
    bot_id: int | None = None


class TokenIssuer:
    def __init__(self, secret: str, issuer: str, audience: str, ttl_s: int) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 characters")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(self, user_id: int, session_id: int, now: float | None = None) -> tuple[str, float]:
        now = time.time() if now is None else now
        exp = now + self.ttl_s
        token = jwt.encode(
            {"sub": str(user_id), "sid": str(session_id), "iss": self.issuer,
             "aud": self.audience, "iat": int(now), "exp": int(exp)},
            self._secret, algorithm=JWT_ALGORITHM)
        return token, exp

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[JWT_ALGORITHM], audience=self.audience,
                issuer=self.issuer, options={"require": ["exp", "iat", "iss", "aud", "sub", "sid"]})
            return Identity(user_id=int(claims["sub"]), session_id=int(claims["sid"]),
                            expires_at=float(claims["exp"]))
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token_expired", "the access token has expired") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise Unauthenticated("invalid_token", "the access token is not valid") from exc


def new_ticket() -> str:
    return secrets.token_urlsafe(TICKET_BYTES)
