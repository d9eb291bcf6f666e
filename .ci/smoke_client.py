"""One end-to-end message through a running Parley: used by the serve smoke
run in CI and handy by hand (python .ci/smoke_client.py API_URL WS_URL)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import httpx
import msgpack
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
from bench import textgen

#: The smoke message: realistic chat text (mentions, links, non-Latin scripts),
#: the same on every run, so the codecs and the search index see real input.
SMOKE_TEXT = next(t for t in textgen.corpus(64, seed=21) if not t.isascii())


async def main(api: str, ws_base: str) -> None:
    tag = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        tokens = []
        for who in ("ada", "bob"):
            email = f"{who}-{tag}@example.com"
            r = await http.post("/v1/auth/register", json={
                "email": email, "password": "correct horse", "display_name": who})
            r.raise_for_status()
            r = await http.post("/v1/auth/login",
                                json={"email": email, "password": "correct horse"})
            r.raise_for_status()
            tokens.append(r.json()["access_token"])
        ada = {"authorization": f"Bearer {tokens[0]}"}
        ws = (await http.post("/v1/workspaces", json={"name": "Smoke"}, headers=ada)).json()
        (await http.post(f"/v1/workspaces/{ws['id']}/members",
                         json={"email": f"bob-{tag}@example.com"}, headers=ada)).raise_for_status()
        chans = (await http.get(f"/v1/workspaces/{ws['id']}/channels", headers=ada)).json()
        general = next(c for c in chans["channels"] if c["name"] == "general")

        url = f"{ws_base}/v1/connect?workspace_id={ws['id']}"
        conns = [await websockets.connect(url, subprotocols=["parley.msgpack.v1"],  # type: ignore[list-item]
                                          additional_headers={"authorization": f"Bearer {t}"})
                 for t in tokens]
        for c in conns:
            hello = msgpack.unpackb(await asyncio.wait_for(c.recv(), 10))
            assert hello["t"] == "hello", hello
        await conns[0].send(msgpack.packb({"op": "send", "ref": 1, "d": {
            "channel_id": int(general["id"]), "text": SMOKE_TEXT, "client_msg_id": tag}}))
        ack = None
        while ack is None:
            ev = msgpack.unpackb(await asyncio.wait_for(conns[0].recv(), 10))
            if ev["t"] == "ack":
                ack = ev
        while True:
            ev = msgpack.unpackb(await asyncio.wait_for(conns[1].recv(), 10))
            if ev["t"] == "message.created":
                assert ev["d"]["id"] == ack["d"]["id"], (ev, ack)
                break
        for c in conns:
            await c.close()
        hist = (await http.get(f"/v1/workspaces/{ws['id']}/channels/{general['id']}/messages",
                               headers=ada)).json()
        assert hist["messages"][-1]["text"] == SMOKE_TEXT, hist
    print(f"smoke: message {ack['d']['id']} seq {ack['d']['seq']} delivered and in history")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
