"""App secrets (parley/appkeys.py): token format and parsing, hashing,
signing-secret derivation, upload tickets."""

from __future__ import annotations

import pytest

from parley import appkeys

SECRET = "server-secret-" + "s" * 40


def test_tokens_parse_back_and_anything_else_is_refused() -> None:
    secret = appkeys.random_secret()
    for kind in ("bot", "app", "user"):
        token = appkeys.make_token(kind, 123, 456, secret)
        assert token.startswith(appkeys.PREFIX_OF_KIND[kind] + "-123-456-")
        parsed = appkeys.parse_token(token)
        assert parsed == appkeys.ParsedToken(kind, 123, 456, secret)
    for bad in ("", "xoxb", "xoxb-1-2", f"xoxz-1-2-{secret}", f"xoxb-0-2-{secret}",
                f"xoxb-1-x-{secret}", f"xoxb-1-2-{secret[:-1]}", f"xoxb-1-2-{secret[:-1]}!",
                f"xoxb-{2**63}-2-{secret}", "eyJhbGciOiJIUzI1NiJ9.e30.x"):
        assert appkeys.parse_token(bad) is None, bad


def test_secrets_are_random_and_compared_by_hash() -> None:
    a, b = appkeys.random_secret(), appkeys.random_secret()
    assert a != b and len(a) == appkeys.TOKEN_SECRET_CHARS
    assert appkeys.same_secret(a, appkeys.secret_hash(a))
    assert not appkeys.same_secret(b, appkeys.secret_hash(a))


def test_signing_secrets_derive_from_server_secret_and_salt() -> None:
    keys = appkeys.AppKeys(SECRET)
    s1 = keys.signing_secret(7, "salt")
    assert len(s1) == 32 and int(s1, 16) >= 0
    assert keys.signing_secret(7, "salt") == s1
    assert keys.signing_secret(7, "other") != s1 and keys.signing_secret(8, "salt") != s1
    assert appkeys.AppKeys(SECRET + "x").signing_secret(7, "salt") != s1


def test_upload_tickets_are_signed_and_expire() -> None:
    keys = appkeys.AppKeys(SECRET)
    ticket = keys.upload_ticket(11, 22, ttl_s=60, now=1_000.0)
    assert keys.check_upload_ticket(ticket, now=1_030.0) == (11, 22)
    assert keys.check_upload_ticket(ticket, now=1_061.0) is None
    ws, fid, exp, sig = ticket.split(".")
    for forged in (f"{ws}.23.{exp}.{sig}", f"{ws}.{fid}.{int(exp) + 60}.{sig}",
                   f"{ws}.{fid}.{exp}.{'0' * len(sig)}", "a.b.c.d", "1.2.3"):
        assert keys.check_upload_ticket(forged, now=1_000.0) is None
    assert appkeys.AppKeys(SECRET + "x").check_upload_ticket(ticket, now=1_000.0) is None


@pytest.mark.parametrize("kind", ["bot", "app", "user"])
def test_prefixes_are_slacks(kind: str) -> None:
    assert appkeys.PREFIX_OF_KIND[kind] in {"xoxb", "xapp", "xoxp"}
