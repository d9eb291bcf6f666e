"""Parley populations: accounts, one workspace, and a socket target for each
connection, built through the REST API (``bench.provision``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.generator import ConnTarget
from bench.provision import (
    MAX_SOCKETS_PER_USER,
    Account,
    Provisioner,
    auth_headers,
    connect_path,
    users_for,
)


@dataclass
class Population:
    """A workspace whose members all sit in #general."""

    workspace_id: int
    general_id: int
    owner: Account
    members: list[Account]
    #: Extra accounts (the publisher), also members of #general.
    extras: list[Account]
    setup_s: float

    def targets(self, n: int, per_user: int = MAX_SOCKETS_PER_USER) -> list[ConnTarget]:
        """``n`` sockets, ``per_user`` per member account, in account order."""
        out: list[ConnTarget] = []
        for i in range(n):
            acct = self.members[i // per_user]
            out.append(ConnTarget(connect_path(self.workspace_id), auth_headers(acct.token),
                                  self.general_id))
        return out

    def extra_targets(self, index: int, n: int) -> list[ConnTarget]:
        acct = self.extras[index]
        return [ConnTarget(connect_path(self.workspace_id), auth_headers(acct.token),
                           self.general_id) for _ in range(n)]


async def _populate(api_url: str, sockets: int, extras: int, per_user: int) -> Population:
    loop = asyncio.get_running_loop()
    started = loop.time()
    prov = Provisioner(api_url)
    try:
        n_users = users_for(sockets, per_user)
        accounts = await prov.accounts(n_users + extras + 1)
        owner, members, extra = accounts[0], accounts[1:n_users + 1], accounts[n_users + 1:]
        wid, general = await prov.workspace(owner, "bench")
        await prov.add_members(owner, wid, members + extra)
    finally:
        await prov.close()
    return Population(wid, general, owner, members, extra, round(loop.time() - started, 2))


def populate(api_url: str, sockets: int, *, extras: int = 0,
             per_user: int = MAX_SOCKETS_PER_USER) -> Population:
    """Accounts for ``sockets`` sockets (+ ``extras`` accounts), one workspace."""
    return asyncio.run(_populate(api_url, sockets, extras, per_user))


def peer_targets(n: int) -> list[ConnTarget]:
    """Peers need no accounts: ``n`` anonymous sockets."""
    return [ConnTarget("/") for _ in range(n)]
