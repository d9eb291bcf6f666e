"""Shared set-up for the collaboration API tests: a cast of users in two
workspaces, path builders and WebSocket event collection.  Everything goes
through the real HTTP API and gateway."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from server.runner import Running
from tests.fixtures.parley import Api, WsClient, indexed, register_and_login


def code(resp: httpx.Response) -> str:
    body: dict[str, Any] = resp.json()
    assert set(body["error"]) >= {"code", "message", "retryable"}, body
    c: str = body["error"]["code"]
    return c


async def expect(api: Api, method: str, path: str, status: int, err: str | None = None,
                 **kw: Any) -> Any:
    """Call and check the status (and error code); returns the JSON body."""
    resp = await api.http.request(method, path, **kw)
    assert resp.status_code == status, (method, path, resp.status_code, resp.text)
    if err is not None:
        assert code(resp) == err, (method, path, resp.text)
    if resp.status_code == 204 or not resp.content:
        return None
    return resp.json()


@dataclass
class User:
    api: Api
    id: str
    email: str

    @property
    def token(self) -> str:
        return self.api.token or ""


@dataclass
class Team:
    """Workspace ``ws`` owned by ada with admin ann, members bob and carol and
    guest gus; workspace ``other`` owned by eve (another tenant)."""

    running: Running
    ada: User
    ann: User
    bob: User
    carol: User
    gus: User
    eve: User
    ws: str
    general: str
    other: str
    other_general: str
    extra: list[User] = field(default_factory=list)

    def w(self, path: str = "", ws: str | None = None) -> str:
        return f"/v1/workspaces/{ws or self.ws}{path}"

    def c(self, channel: str, path: str = "", ws: str | None = None) -> str:
        return self.w(f"/channels/{channel}{path}", ws)

    def m(self, channel: str, message: str, path: str = "", ws: str | None = None) -> str:
        return self.c(channel, f"/messages/{message}{path}", ws)

    async def channel(self, owner: User, name: str, kind: str = "public",
                      members: tuple[User, ...] = ()) -> str:
        ch = await expect(owner.api, "POST", self.w("/channels"), 201,
                          json={"name": name, "kind": kind})
        if members:
            await expect(owner.api, "POST", self.c(ch["id"], "/members"), 200,
                         json={"user_ids": [u.id for u in members]})
        cid: str = ch["id"]
        return cid

    async def post(self, user: User, channel: str, text: str, **kw: Any) -> dict[str, Any]:
        msg: dict[str, Any] = await expect(user.api, "POST", self.c(channel, "/messages"), 201,
                                           json={"text": text, **kw})
        return msg

    async def connect(self, user: User, ws: str | None = None, **kw: Any) -> WsClient:
        return await WsClient.connect(self.running, user.token, ws or self.ws, **kw)

    async def indexed(self) -> None:
        """Wait until every change committed so far is searchable."""
        await indexed(self.running)

    async def close(self) -> None:
        for u in (self.ada, self.ann, self.bob, self.carol, self.gus, self.eve, *self.extra):
            await u.api.close()


async def upload_file(user: User, ws: str, data: bytes, name: str = "plan.txt") -> str:
    """A ready file, uploaded through the API; returns its id."""
    started = await expect(user.api, "POST", f"/v1/workspaces/{ws}/files", 201,
                           json={"name": name, "size": len(data), "content_type": "text/plain"})
    await expect(user.api, "PUT", started["content_url"], 200, content=data)
    fid: str = started["file"]["id"]
    return fid


async def make_user(running: Running, name: str) -> User:
    api, user = await register_and_login(running, f"{name}@example.com", name.title())
    return User(api, user["id"], f"{name}@example.com")


async def make_team(running: Running) -> Team:
    # argon2 hashing runs in threads: registering in parallel saves seconds per test.
    users = await asyncio.gather(*(make_user(running, n)
                                   for n in ("ada", "ann", "bob", "carol", "gus", "eve")))
    ada, ann, bob, carol, gus, eve = users
    ws = await expect(ada.api, "POST", "/v1/workspaces", 201, json={"name": "Acme"})
    for u, role in ((ann, "admin"), (bob, "member"), (carol, "member"), (gus, "guest")):
        await expect(ada.api, "POST", f"/v1/workspaces/{ws['id']}/members", 201,
                     json={"email": u.email, "role": role})
    other = await expect(eve.api, "POST", "/v1/workspaces", 201, json={"name": "Rival"})
    chans = await expect(ada.api, "GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    ochans = await expect(eve.api, "GET", f"/v1/workspaces/{other['id']}/channels", 200)
    return Team(running, ada, ann, bob, carol, gus, eve, ws["id"],
                chans["channels"][0]["id"], other["id"], ochans["channels"][0]["id"])


async def drain(client: WsClient, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every event that arrives until ``quiet`` seconds pass without one (or
    the server closes the socket)."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            out.append(await client.recv(timeout=quiet))
        except (TimeoutError, websockets.ConnectionClosed):
            return out


async def settle(seconds: float = 0.15) -> None:
    """Let the gateway apply a subscription change (it runs as a task)."""
    await asyncio.sleep(seconds)


def types(evs: list[dict[str, Any]]) -> list[str]:
    return [e["t"] for e in evs]
