"""Accounts: register, log in, refresh, log out, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.deps import Auth, Svc, limit_by_address
from api.schemas import LoginIn, RefreshIn, RegisterIn, TokenOut, UserOut
from parley.actions import accounts

router = APIRouter(tags=["auth"])
_by_address = [Depends(limit_by_address)]


@router.post("/v1/auth/register", status_code=201, response_model=UserOut,
             dependencies=_by_address)
async def register(body: RegisterIn, s: Svc) -> UserOut:
    """Create an account."""
    return UserOut.of(await accounts.register(s, body.email, body.password, body.display_name))


@router.post("/v1/auth/login", response_model=TokenOut, dependencies=_by_address)
async def login(body: LoginIn, s: Svc) -> TokenOut:
    """Exchange e-mail and password for an access token and a refresh token
    (a new auth session)."""
    tokens, user = await accounts.login_tokens(s, body.email, body.password)
    return TokenOut(access_token=tokens.access_token, expires_at=int(tokens.expires_at),
                    refresh_token=tokens.refresh_token, user=UserOut.of(user))


@router.post("/v1/auth/refresh", response_model=TokenOut, dependencies=_by_address)
async def refresh(body: RefreshIn, s: Svc) -> TokenOut:
    """Trade a refresh token for a new access token and a new refresh token.
    Each refresh token works once: presenting a used one revokes the whole
    session (401 `refresh_token_reused`) and closes its sockets."""
    tokens = await accounts.refresh(s, body.refresh_token)
    return TokenOut(access_token=tokens.access_token, expires_at=int(tokens.expires_at),
                    refresh_token=tokens.refresh_token)


@router.post("/v1/auth/logout", status_code=204)
async def logout(me: Auth, s: Svc) -> Response:
    """End this session: its tokens (access and refresh) stop working and its
    sockets close."""
    await accounts.logout(s, me)
    return Response(status_code=204)


@router.get("/v1/me", response_model=UserOut)
async def me_(me: Auth, s: Svc) -> UserOut:
    """The caller's account."""
    return UserOut.of(await accounts.me(s, me))
