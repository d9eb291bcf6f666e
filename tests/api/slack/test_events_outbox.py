"""The Events API's outbox events (every kind that is not a message) against
scripted loopback apps: each in Slack's shape, only to apps of the
workspace that subscribe to it and whose bot is in the channel (all of
them for ``channel_created``), never to another workspace's app, written
in the change's transaction (a change rolled back sends nothing), and
``app_uninstalled`` / ``tokens_revoked`` to the app being uninstalled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from parley import slack_ids as ids
from server.runner import Running
from tests.api.helpers import Team, expect, make_user, upload_file
from tests.api.slack.events_helpers import Recorder, fast_events, point_events, signed_by
from tests.api.slack.helpers import Bot, cid, install, manifest, native, team_with_bot, uid

EVERYTHING = ["reaction_added", "reaction_removed", "member_joined_channel",
              "member_left_channel", "channel_created", "channel_archive", "channel_unarchive",
              "group_archive", "group_unarchive", "file_shared", "app_uninstalled",
              "tokens_revoked"]
QUIET_S = 0.6  # how long "nothing else arrives" is watched, after what was expected did


@dataclass
class World:
    """Workspace A: ``bot`` (subscribed to every kind) and ``deaf`` (to
    ``reaction_added`` only), both in #general; workspace B: ``rival``, subscribed to
    every kind, in its #general."""

    t: Team
    bot: Bot
    rec: Recorder
    deaf: Bot
    deaf_rec: Recorder
    rival: Bot
    rival_rec: Recorder

    async def wait(self, kinds: list[str], rec: Recorder | None = None) -> list[dict[str, Any]]:
        """The events of ``kinds`` ``rec`` (``bot``'s by default) got, once it has
        them all, after watching a while for more."""
        rec = rec or self.rec

        def have(_: Any) -> bool:
            got = [e["type"] for e in rec.events()]
            return all(got.count(k) >= kinds.count(k) for k in set(kinds))

        await rec.wait_for(have)
        await asyncio.sleep(QUIET_S)
        return [e for e in rec.events() if e["type"] in kinds]

    def others_got_nothing(self) -> None:
        assert self.deaf_rec.events() == []
        assert self.rival_rec.events() == []


@pytest.fixture
async def world(parley: Running) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        rec, deaf_rec, rival_rec = [await Recorder().start() for _ in range(3)]
        for r in (rec, deaf_rec, rival_rec):
            stack.push_async_callback(r.stop)
        t, bot = await team_with_bot(parley)
        stack.push_async_callback(t.close)
        fast_events(parley)
        deaf, _ = await install(t.ada, t.ws, manifest("Deaf"), parley)
        rival, _ = await install(t.eve, t.other, manifest("Rival"), parley)
        for b in (bot, deaf):
            await b.call(b.client.conversations_join, channel=cid("public", t.general))
        await rival.call(rival.client.conversations_join, channel=cid("public", t.other_general))
        await point_events(t.ada, t.ws, bot, rec.url, EVERYTHING)
        await point_events(t.ada, t.ws, deaf, deaf_rec.url, ["reaction_added"])
        await point_events(t.eve, t.other, rival, rival_rec.url, EVERYTHING)
        assert rec.verifications and deaf_rec.verifications and rival_rec.verifications
        yield World(t, bot, rec, deaf, deaf_rec, rival, rival_rec)


async def test_reaction_removed_goes_to_bots_in_the_channel(world: World) -> None:
    t = world.t
    msg = await t.post(t.bob, t.general, "ship it")
    quiet = await t.channel(t.ada, "quiet", members=(t.bob,))
    other = await t.post(t.bob, quiet, "not seen by the bot")
    for user, channel, mid in ((t.carol, t.general, msg["id"]), (t.bob, quiet, other["id"])):
        await expect(user.api, "PUT", t.m(channel, mid, "/reactions/rocket"), 204)
        await expect(user.api, "DELETE", t.m(channel, mid, "/reactions/rocket"), 204)
    added, removed = sorted(await world.wait(["reaction_added", "reaction_removed"]),
                            key=lambda e: e["type"])
    assert removed == {**added, "type": "reaction_removed", "event_ts": removed["event_ts"]}
    assert removed["user"] == uid(t.carol.id) and removed["reaction"] == "rocket"
    assert removed["item_user"] == uid(t.bob.id)
    assert removed["item"] == {"type": "message", "channel": cid("public", t.general),
                               "ts": added["item"]["ts"]}
    got = [r for r in world.rec.received if r.payload["event"]["type"] == "reaction_removed"]
    assert signed_by(world.bot.signing_secret, got[0].headers, got[0].body)
    assert got[0].payload["type"] == "event_callback"
    assert got[0].payload["team_id"] == world.bot.app["slack"]["team_id"]
    # The app subscribed to reaction_added only gets that one.
    assert [e["type"] for e in world.deaf_rec.events()] == ["reaction_added"]
    assert world.rival_rec.events() == []


async def test_member_joined_and_left_channel(world: World) -> None:
    t, bot = world.t, world.bot
    ops = await t.channel(t.ada, "ops")
    secret = await t.channel(t.ada, "secret", kind="private")
    await bot.call(bot.client.conversations_join, channel=cid("public", ops))  # the bot itself
    await expect(t.ada.api, "POST", t.c(ops, "/members"), 200, json={"user_ids": [t.bob.id]})
    await expect(t.bob.api, "POST", t.c(ops, "/leave"), 204)
    await expect(t.ada.api, "POST", t.c(secret, "/members"), 200,
                 json={"user_ids": [native(bot.user_id)]})
    quiet = await t.channel(t.ada, "quiet")  # the bot is not in it: nothing from here
    await expect(t.bob.api, "POST", t.c(quiet, "/join"), 200)
    await expect(t.bob.api, "POST", t.c(quiet, "/leave"), 204)
    got = await world.wait(["member_joined_channel"] * 3 + ["member_left_channel"])
    joins = {(e["channel"], e["user"]): e for e in got if e["type"] == "member_joined_channel"}
    team = world.bot.app["slack"]["team_id"]
    self_join = joins.pop((cid("public", ops), bot.user_id))
    assert self_join == {"type": "member_joined_channel", "user": bot.user_id,
                         "channel": cid("public", ops), "channel_type": "C", "team": team,
                         "event_ts": self_join["event_ts"]}
    invited = joins.pop((cid("public", ops), uid(t.bob.id)))
    assert invited["inviter"] == uid(t.ada.id) and invited["channel_type"] == "C"
    private = joins.pop((cid("private", secret), bot.user_id))
    assert private["channel_type"] == "G" and private["inviter"] == uid(t.ada.id)
    assert joins == {}
    (left,) = [e for e in got if e["type"] == "member_left_channel"]
    assert left == {"type": "member_left_channel", "user": uid(t.bob.id),
                    "channel": cid("public", ops), "channel_type": "C", "team": team,
                    "event_ts": left["event_ts"]}
    world.others_got_nothing()


async def test_channel_created_goes_to_every_subscribed_app(world: World) -> None:
    t = world.t
    launch = await t.channel(t.bob, "launch")
    await t.channel(t.bob, "hidden", kind="private")  # private: no channel_created
    (ev,) = await world.wait(["channel_created"])
    shown = await expect(t.bob.api, "GET", t.c(launch), 200)
    assert ev == {"type": "channel_created",
                  "channel": {"id": cid("public", launch), "name": "launch",
                              "created": ev["channel"]["created"], "creator": uid(t.bob.id)},
                  "event_ts": ev["event_ts"]}
    assert isinstance(ev["channel"]["created"], int)
    assert abs(ev["channel"]["created"] - float(ev["event_ts"])) < 1
    assert shown["name"] == "launch"
    assert [e["type"] for e in world.rec.events()] == ["channel_created"]  # bot not in it
    world.others_got_nothing()


async def test_channel_and_group_archive(world: World) -> None:
    t, bot = world.t, world.bot
    ops = await t.channel(t.ada, "ops")
    secret = await t.channel(t.ada, "secret", kind="private")
    quiet = await t.channel(t.ada, "quiet")
    await bot.call(bot.client.conversations_join, channel=cid("public", ops))
    await expect(t.ada.api, "POST", t.c(secret, "/members"), 200,
                 json={"user_ids": [native(bot.user_id)]})
    for channel in (ops, secret, quiet):
        await expect(t.ada.api, "POST", t.c(channel, "/archive"), 200)
    await expect(t.ada.api, "POST", t.c(ops, "/archive"), 200)  # already: no second event
    await expect(t.ada.api, "POST", t.c(ops, "/unarchive"), 200)
    got = await world.wait(["channel_archive", "group_archive", "channel_unarchive"])
    by_type = {e["type"]: e for e in got}
    assert len(got) == 3
    assert by_type["channel_archive"] == {
        "type": "channel_archive", "channel": cid("public", ops), "user": uid(t.ada.id),
        "event_ts": by_type["channel_archive"]["event_ts"]}
    assert by_type["channel_unarchive"]["channel"] == cid("public", ops)
    assert by_type["channel_unarchive"]["user"] == uid(t.ada.id)
    assert by_type["group_archive"] == {"type": "group_archive",
                                        "channel": cid("private", secret),
                                        "event_ts": by_type["group_archive"]["event_ts"]}
    world.others_got_nothing()


async def test_file_shared_goes_to_bots_in_the_channel(world: World) -> None:
    t = world.t
    quiet = await t.channel(t.ada, "quiet", members=(t.bob,))
    fid = await upload_file(t.bob, t.ws, b"the plan")
    other = await upload_file(t.bob, t.ws, b"not for the bot")
    await t.post(t.bob, t.general, "see attached", file_ids=[fid])
    await t.post(t.bob, quiet, "see attached", file_ids=[other])
    (ev,) = await world.wait(["file_shared"])
    slack_file = ids.file(int(fid))
    assert ev == {"type": "file_shared", "file_id": slack_file, "user_id": uid(t.bob.id),
                  "file": {"id": slack_file}, "channel_id": cid("public", t.general),
                  "event_ts": ev["event_ts"]}
    world.others_got_nothing()


async def test_app_uninstalled_and_tokens_revoked_go_to_the_uninstalled_app(
        world: World) -> None:
    t, bot = world.t, world.bot
    await point_events(t.ada, t.ws, world.deaf, world.deaf_rec.url, ["member_left_channel"])
    await expect(t.ada.api, "POST", t.w(f"/apps/{bot.app['id']}/uninstall"), 200)
    got = await world.wait(["app_uninstalled", "tokens_revoked"])
    by_type = {e["type"]: e for e in got}
    assert by_type["app_uninstalled"] == {"type": "app_uninstalled",
                                          "event_ts": by_type["app_uninstalled"]["event_ts"]}
    assert by_type["tokens_revoked"] == {"type": "tokens_revoked",
                                         "tokens": {"oauth": [], "bot": [bot.user_id]},
                                         "event_ts": by_type["tokens_revoked"]["event_ts"]}
    env = next(r for r in world.rec.received if r.payload["event"]["type"] == "app_uninstalled")
    assert env.payload["api_app_id"] == bot.app["slack"]["app_id"]
    assert signed_by(bot.signing_secret, env.headers, env.body)
    # The other app of the workspace sees the bot leave #general.
    (left,) = await world.wait(["member_left_channel"], world.deaf_rec)
    assert left["user"] == bot.user_id and left["channel"] == cid("public", t.general)
    # After the uninstall the app gets nothing more; a second uninstall tells it nothing.
    await expect(t.ada.api, "POST", t.w(f"/apps/{bot.app['id']}/uninstall"), 200)
    await t.channel(t.ada, "later")
    await asyncio.sleep(QUIET_S)
    assert len(world.rec.events()) == 2
    assert world.rival_rec.events() == []


async def test_a_single_revoked_token_sends_tokens_revoked_once(world: World) -> None:
    """``auth.revoke`` (the token revokes itself) tells the still installed
    app, in Slack's shape; revoking it again tells it nothing more."""
    bot = world.bot
    assert (await bot.call(bot.client.auth_revoke))["revoked"] is True
    (ev,) = await world.wait(["tokens_revoked"])
    assert ev == {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [bot.user_id]},
                  "event_ts": ev["event_ts"]}
    tokens = await expect(world.t.ada.api, "GET",
                          world.t.w(f"/apps/{bot.app['id']}/tokens"), 200)
    revoked = [tk for tk in tokens["tokens"] if tk["revoked"]]
    assert len(revoked) == 1
    await expect(world.t.ada.api, "DELETE",
                 world.t.w(f"/apps/{bot.app['id']}/tokens/{revoked[0]['id']}"), 204)
    await asyncio.sleep(QUIET_S)
    assert [e["type"] for e in world.rec.events()] == ["tokens_revoked"]
    world.others_got_nothing()


async def test_a_change_rolled_back_writes_no_outbox_row(world: World, parley: Running) -> None:
    """The row commits with the change or not at all: a join whose commit
    fails (a deferred trigger) leaves no row and sends nothing; the same
    join committed is delivered."""
    t = world.t
    ops = await t.channel(t.ada, "ops")
    await world.bot.call(world.bot.client.conversations_join, channel=cid("public", ops))
    await world.wait(["member_joined_channel"])
    pool = next(iter(parley.rt.db.pools.values()))
    await pool.execute(
        """CREATE FUNCTION test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'injected commit failure'; END $$""")
    await pool.execute(
        f"""CREATE CONSTRAINT TRIGGER test_fail_join AFTER INSERT ON channel_members
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (NEW.user_id = {int(t.bob.id)}) EXECUTE FUNCTION test_fail_commit()""")
    resp = await t.bob.api.http.request("POST", t.c(ops, "/join"))
    assert resp.status_code >= 500  # the injected failure, at commit
    assert await pool.fetchval(
        "SELECT count(*) FROM app_event_outbox WHERE payload->>'user_id' = $1", t.bob.id) == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM channel_members WHERE channel_id = $1 AND user_id = $2",
        int(ops), int(t.bob.id)) == 0
    await pool.execute("DROP TRIGGER test_fail_join ON channel_members")
    await expect(t.bob.api, "POST", t.c(ops, "/join"), 200)
    got = await world.wait(["member_joined_channel"] * 2)
    assert [e["user"] for e in got] == [world.bot.user_id, uid(t.bob.id)]


async def test_a_new_workspace_member_joins_general_and_a_deactivated_one_leaves(
        world: World, parley: Running) -> None:
    t = world.t
    dan = await make_user(parley, "dan")
    t.extra.append(dan)
    await expect(t.ada.api, "POST", t.w("/members"), 201, json={"email": dan.email,
                                                                "role": "member"})
    await expect(t.ada.api, "POST", t.w(f"/members/{dan.id}/deactivate"), 204)
    got = await world.wait(["member_joined_channel", "member_left_channel"])
    assert {(e["type"], e["user"], e["channel"]) for e in got} == {
        ("member_joined_channel", uid(dan.id), cid("public", t.general)),
        ("member_left_channel", uid(dan.id), cid("public", t.general))}
    world.others_got_nothing()
