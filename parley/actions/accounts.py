"""Accounts: register, log in, refresh, authenticate, log out, connect tickets.

Refresh tokens rotate: each use returns a new access token and a new refresh
token and retires the old one.  A retired token presented again means two
parties hold the family (a stolen token, or a replayed request), so the whole
auth session is revoked and its sockets closed (OAuth 2.0 Security BCP,
"refresh token rotation" with reuse detection).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

from parley import auth, events
from parley.actions import validate
from parley.auth import Identity
from parley.errors import Conflict, Forbidden, Unauthenticated
from parley.model import User
from parley.services import Services

# A fixed argon2 hash to verify against when the e-mail is unknown, so that
# login takes the same time whether or not an account exists.
_DUMMY_HASH = auth.hash_password("parley-dummy-password")


async def register(svc: Services, email: str, password: str, display_name: str) -> User:
    email = validate.email(email)
    validate.password(password)
    display_name = validate.display_text(display_name, "display_name")
    # argon2 is deliberately slow (tens of ms): keep it off the event loop.
    password_hash = await asyncio.to_thread(auth.hash_password, password)
    user = await svc.store.users.create_user(svc.ids.next_id(), email, display_name, password_hash)
    if user is None:
        raise Conflict("email_taken", "an account with this e-mail address exists")
    return user


REFRESH_TOKEN_BYTES = 32  # 256 bits


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    expires_at: float  # unix seconds
    refresh_token: str
    user_id: int
    session_id: int


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _new_refresh_token(svc: Services, session_id: int, user_id: int) -> str:
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    await svc.store.sessions.create_refresh_token(_token_hash(token), session_id, user_id,
                                                  svc.settings.refresh_token_ttl_s)
    return token


async def login(svc: Services, email: str, password: str) -> tuple[str, float, User]:
    """(access token, expiry in unix seconds, user); see ``login_tokens``."""
    tokens, user = await login_tokens(svc, email, password)
    return tokens.access_token, tokens.expires_at, user


async def login_tokens(svc: Services, email: str, password: str) -> tuple[Tokens, User]:
    """A new auth session: an access token and the first refresh token of its family."""
    address = validate.lookup_email(email)
    user = None if address is None else await svc.store.users.user_by_email(address)
    # A password that is not valid Unicode is nobody's (register refuses it)
    # and argon2 could not even encode it: wrong, like any other.
    ok = validate.encodable(password) and await asyncio.to_thread(
        auth.verify_password, user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok:
        raise Unauthenticated("invalid_credentials", "wrong e-mail address or password")
    if user.deactivated:
        raise Forbidden("account_deactivated", "this account is deactivated")
    if auth.needs_rehash(user.password_hash):
        await svc.store.users.update_password_hash(
            user.id, await asyncio.to_thread(auth.hash_password, password))
    session_id = svc.ids.next_id()
    await svc.store.sessions.create_session(session_id, user.id)
    token, exp = svc.tokens.issue(user.id, session_id)
    refresh_token = await _new_refresh_token(svc, session_id, user.id)
    return Tokens(token, exp, refresh_token, user.id, session_id), user


async def refresh(svc: Services, refresh_token: str) -> Tokens:
    """Rotate a refresh token: a new access token and refresh token."""
    if not 1 <= len(refresh_token) <= 256 or not validate.opaque_token(refresh_token):
        raise Unauthenticated("invalid_refresh_token", "the refresh token is not valid")
    new = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    outcome = await svc.store.sessions.rotate_refresh_token(
        _token_hash(refresh_token), _token_hash(new), svc.settings.refresh_token_ttl_s)
    if outcome.status == "reused" and outcome.user_id is not None:
        await svc.publish(events.user_topic(outcome.user_id),
                          events.encode(events.SESSION_REVOKED,
                                        {"session_id": outcome.session_id}))
        raise Unauthenticated("refresh_token_reused",
                              "this refresh token was already used; the session is revoked, "
                              "log in again")
    if outcome.status != "rotated" or outcome.user_id is None or outcome.session_id is None:
        raise Unauthenticated("invalid_refresh_token",
                              "the refresh token is unknown, expired or its session ended")
    token, exp = svc.tokens.issue(outcome.user_id, outcome.session_id)
    return Tokens(token, exp, new, outcome.user_id, outcome.session_id)


async def me(svc: Services, ident: Identity) -> User:
    user = await svc.store.users.user(ident.user_id)
    if user is None:
        from parley.errors import NotFound

        raise NotFound("user_not_found", "no such user")
    return user


async def authenticate(svc: Services, token: str) -> Identity:
    """Verify the token and that its session is still live."""
    ident = svc.tokens.verify(token)
    if not await svc.store.sessions.session_active(ident.session_id, ident.user_id):
        raise Unauthenticated("session_revoked", "this session has ended; log in again")
    return ident


async def logout(svc: Services, ident: Identity) -> None:
    await svc.store.sessions.revoke_session(ident.session_id, ident.user_id)
    # Every gateway holding a socket of this session closes it.
    await svc.publish(events.user_topic(ident.user_id),
                      events.encode(events.SESSION_REVOKED, {"session_id": ident.session_id}))


async def issue_connect_ticket(svc: Services, ident: Identity,
                               workspace_id: int) -> tuple[str, float]:
    """A single-use ticket for a browser's gateway upgrade (browsers cannot
    set an Authorization header on a WebSocket)."""
    from parley.actions.workspaces import require_member  # avoid an import cycle

    await require_member(svc, ident, workspace_id)
    ticket = auth.new_ticket()
    await svc.store.sessions.create_ticket(ticket, ident.user_id, ident.session_id, workspace_id,
                                           auth.TICKET_TTL_S)
    return ticket, auth.TICKET_TTL_S


async def redeem_connect_ticket(svc: Services, ticket: str) -> tuple[Identity, int]:
    # (the handshake decodes the query as strict UTF-8, but "%00" is a NUL)
    found = (await svc.store.sessions.consume_ticket(ticket) if validate.opaque_token(ticket)
             else None)
    if found is None:
        raise Unauthenticated("invalid_ticket", "the connect ticket is unknown, used or expired")
    user_id, session_id, workspace_id = found
    if not await svc.store.sessions.session_active(session_id, user_id):
        raise Unauthenticated("session_revoked", "this session has ended; log in again")
    # A ticket-authenticated socket lives as long as an access token would.
    return Identity(user_id=user_id, session_id=session_id,
                    expires_at=time.time() + svc.tokens.ttl_s), workspace_id
