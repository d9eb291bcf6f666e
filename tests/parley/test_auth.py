"""Tokens: algorithm pinned, required claims enforced, expiry honoured."""

from __future__ import annotations

import time

import jwt
import pytest

from parley.auth import TokenIssuer, hash_password, verify_password
from parley.errors import Unauthenticated

SECRET = "s" * 48


def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET, "parley", "parley", 900)


def test_round_trip() -> None:
    token, exp = issuer().issue(7, 9)
    ident = issuer().verify(token)
    assert (ident.user_id, ident.session_id) == (7, 9)
    assert abs(ident.expires_at - exp) < 1


def test_expired_token_is_refused_with_its_own_code() -> None:
    token, _ = issuer().issue(7, 9, now=time.time() - 10_000)
    with pytest.raises(Unauthenticated) as err:
        issuer().verify(token)
    assert err.value.code == "token_expired"


@pytest.mark.parametrize("claims", [
    {"sub": "7", "sid": "9", "iss": "parley", "aud": "parley"},  # no exp
    {"sub": "7", "sid": "9", "iss": "evil", "aud": "parley", "exp": 2**40, "iat": 1},
    {"sub": "7", "sid": "9", "iss": "parley", "aud": "other", "exp": 2**40, "iat": 1},
    {"sid": "9", "iss": "parley", "aud": "parley", "exp": 2**40, "iat": 1},  # no sub
])
def test_missing_or_wrong_claims_are_refused(claims: dict[str, object]) -> None:
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        issuer().verify(token)


# The forgeries sign HS512 with our 48-byte secret on purpose; PyJWT warns
# that the key is short for HS512, which is beside the point here.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_algorithms_and_forgeries_are_refused() -> None:
    claims = {"sub": "7", "sid": "9", "iss": "parley", "aud": "parley", "exp": 2**40, "iat": 1}
    for token in (jwt.encode(claims, SECRET, algorithm="HS512"),
                  jwt.encode(claims, "another-secret-" * 4, algorithm="HS256"),
                  jwt.encode(claims, None, algorithm="none"),
                  "not.a.token"):
        with pytest.raises(Unauthenticated):
            issuer().verify(token)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        TokenIssuer("short", "parley", "parley", 900)


def test_passwords_hash_with_argon2id() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password("garbage", "correct horse")
