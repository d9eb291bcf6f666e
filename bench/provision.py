"""Accounts, workspaces and channels for a run, through the REST API only
(the README's curl walkthrough, concurrently).

Registration and login each hash a password with argon2 (about 50 ms of CPU
and 64 MiB each), so accounts are created with bounded concurrency and each
account is reused for up to ``MAX_SOCKETS_PER_USER`` sockets, the gateway's
per-user cap (``gateway.session.MAX_CONNECTIONS_PER_USER``).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

#: The gateway's cap on sockets per user per gateway (gateway/session.py).
MAX_SOCKETS_PER_USER = 32
PASSWORD = "bench password 1234"  # noqa: S105 - throwaway benchmark accounts
#: Concurrent argon2 requests: the server hashes in threads; more only queues.
HASH_CONCURRENCY = 8
#: Concurrent cheap requests (members, channels).
CALL_CONCURRENCY = 32
#: Attempts of one call answered 429 rate_limited (waiting Retry-After each time).
RATE_LIMIT_RETRIES = 120


@dataclass
class Account:
    email: str
    user_id: int
    token: str


class ProvisionError(RuntimeError):
    """A REST call failed; the message has the status and body."""


class Provisioner:
    """A small REST client for setting a run up."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=api_url, timeout=120.0,
                                      limits=httpx.Limits(max_connections=64))
        self.run_tag = secrets.token_hex(4)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, token: str | None = None,
                   body: dict[str, Any] | None = None) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        for _ in range(RATE_LIMIT_RETRIES):
            resp = await self.http.request(method, path, json=body, headers=headers)
            if resp.status_code != 429:
                break
            # A server we did not start keeps its REST rate limits: honour them.
            await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
        if resp.status_code >= 400:
            raise ProvisionError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    async def account(self, i: int) -> Account:
        email = f"bench-{self.run_tag}-{i}@example.com"
        user = await self.call("POST", "/v1/auth/register",
                               body={"email": email, "password": PASSWORD,
                                     "display_name": f"Bench {i}"})
        tok = await self.call("POST", "/v1/auth/login",
                              body={"email": email, "password": PASSWORD})
        return Account(email=email, user_id=int(user["id"]), token=tok["access_token"])

    async def accounts(self, n: int, start: int = 0) -> list[Account]:
        sem = asyncio.Semaphore(HASH_CONCURRENCY)

        async def one(i: int) -> Account:
            async with sem:
                return await self.account(i)

        return list(await asyncio.gather(*(one(start + i) for i in range(n))))

    async def workspace(self, owner: Account, name: str) -> tuple[int, int]:
        """Create a workspace; returns (workspace id, #general channel id)."""
        ws = await self.call("POST", "/v1/workspaces", owner.token, {"name": name})
        wid = int(ws["id"])
        chans = await self.call("GET", f"/v1/workspaces/{wid}/channels", owner.token)
        general = next(int(c["id"]) for c in chans["channels"] if c.get("name") == "general")
        return wid, general

    async def add_members(self, owner: Account, workspace_id: int,
                          members: list[Account]) -> None:
        """Add accounts to a workspace (they join #general with it)."""
        sem = asyncio.Semaphore(CALL_CONCURRENCY)

        async def one(a: Account) -> None:
            async with sem:
                await self.call("POST", f"/v1/workspaces/{workspace_id}/members", owner.token,
                                {"email": a.email})

        await asyncio.gather(*(one(a) for a in members if a.user_id != owner.user_id))

    async def channel(self, who: Account, workspace_id: int, name: str) -> int:
        ch = await self.call("POST", f"/v1/workspaces/{workspace_id}/channels", who.token,
                             {"name": name})
        return int(ch["id"])

    async def channels(self, specs: list[tuple[Account, int, str]]) -> list[int]:
        """Create channels ``(creator, workspace, name)``; the creator is a member."""
        sem = asyncio.Semaphore(CALL_CONCURRENCY)

        async def one(spec: tuple[Account, int, str]) -> int:
            async with sem:
                return await self.channel(*spec)

        return list(await asyncio.gather(*(one(s) for s in specs)))


def users_for(connections: int, per_user: int = MAX_SOCKETS_PER_USER) -> int:
    """Accounts needed for ``connections`` sockets at ``per_user`` each."""
    return max(1, -(-connections // per_user))


def connect_path(workspace_id: int) -> str:
    return f"/v1/connect?workspace_id={workspace_id}"


def auth_headers(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]
