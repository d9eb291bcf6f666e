"""Accounts: register, log in, authenticate, log out, connect tickets."""

from __future__ import annotations

import asyncio
import time

from parley import auth, events
from parley.actions import validate
from parley.auth import Identity
from parley.errors import Conflict, Forbidden, Unauthenticated
from parley.services import Services
from storage.interfaces import User

# A fixed argon2 hash to verify against when the e-mail is unknown, so that
# login takes the same time whether or not an account exists.
_DUMMY_HASH = auth.hash_password("parley-dummy-password")


async def register(svc: Services, email: str, password: str, display_name: str) -> User:
    email = validate.email(email)
    validate.password(password)
    display_name = validate.display_text(display_name, "display_name")
    # argon2 is deliberately slow (tens of ms): keep it off the event loop.
    password_hash = await asyncio.to_thread(auth.hash_password, password)
    user = await svc.store.create_user(svc.ids.next_id(), email, display_name, password_hash)
    if user is None:
        raise Conflict("email_taken", "an account with this e-mail address exists")
    return user


async def login(svc: Services, email: str, password: str) -> tuple[str, float, User]:
    """(access token, expiry in unix seconds, user)."""
    user = await svc.store.user_by_email(email)
    ok = await asyncio.to_thread(auth.verify_password,
                                 user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok:
        raise Unauthenticated("invalid_credentials", "wrong e-mail address or password")
    if user.deactivated:
        raise Forbidden("account_deactivated", "this account is deactivated")
    if auth.needs_rehash(user.password_hash):
        await svc.store.update_password_hash(
            user.id, await asyncio.to_thread(auth.hash_password, password))
    session_id = svc.ids.next_id()
    await svc.store.create_session(session_id, user.id)
    token, exp = svc.tokens.issue(user.id, session_id)
    return token, exp, user


async def authenticate(svc: Services, token: str) -> Identity:
    """Verify the token and that its session is still live."""
    ident = svc.tokens.verify(token)
    if not await svc.store.session_active(ident.session_id, ident.user_id):
        raise Unauthenticated("session_revoked", "this session has ended; log in again")
    return ident


async def logout(svc: Services, ident: Identity) -> None:
    await svc.store.revoke_session(ident.session_id, ident.user_id)
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
    await svc.store.create_ticket(ticket, ident.user_id, ident.session_id, workspace_id,
                                  auth.TICKET_TTL_S)
    return ticket, auth.TICKET_TTL_S


async def redeem_connect_ticket(svc: Services, ticket: str) -> tuple[Identity, int]:
    found = await svc.store.consume_ticket(ticket)
    if found is None:
        raise Unauthenticated("invalid_ticket", "the connect ticket is unknown, used or expired")
    user_id, session_id, workspace_id = found
    if not await svc.store.session_active(session_id, user_id):
        raise Unauthenticated("session_revoked", "this session has ended; log in again")
    # A ticket-authenticated socket lives as long as an access token would.
    return Identity(user_id=user_id, session_id=session_id,
                    expires_at=time.time() + svc.tokens.ttl_s), workspace_id
