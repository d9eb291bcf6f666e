"""bench/textgen.py: realistic chat text, reproducible per seed."""

from __future__ import annotations

import statistics
import unicodedata

import asyncpg

from bench import textgen


def _scripts(text: str) -> set[str]:
    """First word of the Unicode name of each letter: LATIN, CYRILLIC, CJK, ..."""
    return {unicodedata.name(c, "?").split()[0] for c in text if c.isalpha()}


def test_same_seed_gives_the_same_messages_and_another_seed_others() -> None:
    assert textgen.corpus(200, seed=3) == textgen.corpus(200, seed=3)
    assert textgen.corpus(200, seed=3) != textgen.corpus(200, seed=4)
    gen = textgen.TextGen(3)
    assert [gen.message() for _ in range(200)] == textgen.corpus(200, seed=3)


def test_sizes_average_the_design_200_bytes_with_a_long_tail() -> None:
    sizes = [len(t.encode()) for t in textgen.corpus(20_000, seed=1)]
    assert 180 <= statistics.mean(sizes) <= 220
    assert statistics.median(sizes) < statistics.mean(sizes)  # skewed right
    assert max(sizes) > 1500, "a long tail"
    assert min(sizes) >= 1 and max(sizes) <= textgen.MAX_BYTES


def test_an_explicit_size_is_an_upper_bound_close_to_reach() -> None:
    sizes = [len(t.encode()) for t in textgen.corpus(2000, seed=2, size=100)]
    assert all(s <= 100 for s in sizes)
    assert statistics.mean(sizes) > 85


def test_vocabulary_holds_hundreds_of_words_and_non_latin_scripts() -> None:
    assert textgen.ENGLISH_WORDS >= 300
    seen = set().union(*(_scripts(t) for t in textgen.corpus(2000, seed=5)))
    assert {"LATIN", "CYRILLIC", "CJK", "ARABIC"} <= seen, seen


def test_messages_carry_mentions_links_and_emoji() -> None:
    texts = textgen.corpus(2000, seed=6)
    assert sum("@" in t for t in texts) > 100
    assert sum("https://" in t for t in texts) > 50
    assert sum(any(unicodedata.category(c) == "So" for c in t) for t in texts) > 100


def test_text_is_valid_for_postgresql_and_the_gateway() -> None:
    for t in textgen.corpus(5000, seed=7):
        assert t and t == t.strip()
        assert "\x00" not in t
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in t), "no lone surrogates"
        assert not any(unicodedata.category(c) == "Cc" for c in t), "no control characters"
        t.encode("utf-8")  # strict: raises on anything unencodable


async def test_a_100_char_message_has_10_to_20_lexemes_in_postgresql(pg_dsn: str) -> None:
    """The cost that matters downstream: GIN entries per message (issue 21
    measured about 16 for realistic 100-character text, 3 for the old corpus)."""
    texts = textgen.corpus(300, seed=8, size=100)
    conn = await asyncpg.connect(pg_dsn)
    try:
        counts = [r["n"] for r in await conn.fetch(
            "SELECT length(to_tsvector('simple', t)) AS n FROM unnest($1::text[]) AS t", texts)]
        # PostgreSQL stores every one of them (it rejects NUL and bad UTF-8).
        stored = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::text[]) AS t WHERE t <> ''", texts)
    finally:
        await conn.close()
    assert 10 <= statistics.mean(counts) <= 20, statistics.mean(counts)
    assert stored == len(texts)
