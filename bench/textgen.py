"""Realistic chat text, reproducibly: the load the benchmarks send by default.

Why: the benchmarks used to send ``~ts=<digits>~xxx...``, three lexemes, two
of them the same in every message, so PostgreSQL's full-text work (a GIN
entry per distinct lexeme) cost almost nothing and the figures hid 60% of
what real traffic costs (issue 21).  This generator stands in for real chat:

* words drawn from an embedded vocabulary with Zipf weights (rank ``r`` has
  weight ``1 / r ** ZIPF_S``), mostly common English, with some Cyrillic,
  CJK and Arabic words (``NON_LATIN_SHARE`` of the draws) so non-Latin
  scripts go through the parser, the codecs and the index;
* occasional @mentions, links, emoji (as characters and as ``:shortcodes:``)
  and sentence punctuation;
* sizes in UTF-8 bytes from a log-normal distribution whose mean is the
  design's 200-byte average, with a long tail up to ``MAX_BYTES``;
* fixed seed: the same ``seed`` gives the same messages, in the same order,
  on every machine (``random.Random`` is specified to be reproducible).

Every message is valid for PostgreSQL ``text`` (no NUL, no lone surrogates)
and for the gateway (no control characters).  Generation costs tens of
microseconds per message, so load generators build a ``corpus`` once and
cycle through it rather than generating on the send path.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence

#: Mean message size in UTF-8 bytes (the design's average, docs/architecture.md).
MEAN_BYTES = 200
#: Spread of the log-normal size distribution (sigma of ln(size)): median
#: about 133 bytes, one message in a hundred over 1 kB.
SIZE_SIGMA = 0.9
#: Smallest and largest message sizes, in bytes (the tail is cut here).
MIN_BYTES = 2
MAX_BYTES = 4000
#: Zipf exponent of word frequencies (about 1 for natural language).
ZIPF_S = 1.05
#: Share of word draws taken from the non-Latin vocabulary.
NON_LATIN_SHARE = 0.06
#: Per-word chances of a mention, a link and an emoji in place of a word.
MENTION_P = 0.02
LINK_P = 0.01
EMOJI_P = 0.03
#: Chance that a word ends a sentence (punctuation follows it).
SENTENCE_END_P = 0.08

def _words(block: str) -> tuple[str, ...]:
    return tuple(block.split())


# Common English words, roughly by frequency (Zipf ranks follow this order).
_ENGLISH = _words("""
the to i you a and it is that of in for we on this be have do not with can
just so but are my was if me what at all it's will get up think know out
there they one about like yes no good ok okay now how your go see need
time here from some more then when let's also an or as today would could
should going right sure thanks thank great work want make did got any
really yeah been back done new still tomorrow look looks meeting call
please check take one two three week day morning afternoon tonight later
soon again first last next team people thing things way something nothing
everything someone anyone because before after while since until maybe
probably actually pretty very much many few lot bit little big small
other same different happy sorry fine nice cool awesome love hate hope
feel guess mean said say says tell told ask asked give gave put keep
find found try tried use used help start started stop fix fixed test
tests build deploy release merge branch review code bug issue ticket
server client database query index cache queue latency load search
message messages channel thread reply post update updates change changes
plan doc docs draft design spec notes demo slides deck budget cost price
customer customers user users account product feature features launch
ship shipped week's today's lunch coffee break office home remote travel
flight hotel weekend holiday birthday party dinner game music movie book
read write wrote send sent open close closed ready late early long short
hard easy quick slow fast high low best better worse top bottom left
right front end side part whole half full empty free busy available out
working broken failing passing green red blue yellow black white old
young real true false wrong problem question answer idea reason point
case example number data file files folder link page site app phone
email calendar invite schedule friday monday tuesday wednesday thursday
saturday sunday january june july december year month hour minute
second minutes hours days weeks months years ago already yet almost
enough only even ever never always often sometimes usually though
although however anyway otherwise instead together alone between
through during without within against among around above below under
over into onto toward across behind beside near far away off down
who whom whose which where why whatever whenever wherever however
us them him her his hers its our ours their theirs mine yours myself
yourself himself herself itself ourselves themselves each every both
either neither such own than too well also else perhaps quite rather
""")

# Non-Latin words: Cyrillic, CJK (Chinese, Japanese), Arabic.
_NON_LATIN = _words("""
привет спасибо да нет сегодня завтра встреча проект работа код сервер
ошибка релиз команда вопрос ответ хорошо отлично понятно конечно может
你好 谢谢 是的 不是 今天 明天 会议 项目 工作 代码 服务器 问题 发布 团队
こんにちは ありがとう はい いいえ 今日 明日 会議 仕事 コード 確認 お願いします
مرحبا شكرا نعم لا اليوم غدا اجتماع مشروع عمل خادم مشكلة فريق سؤال جواب
""")

_NAMES = _words("""
ada bob carol dave eve frank grace heidi ivan judy mallory oscar peggy
trent victor walter alice yuki olga wei fatima omar sofia lucas mia
""")

_EMOJI = ("🙂", "😂", "👍", "🎉", "🚀", "🔥", "❤️", "🙏", "👀", "✅", "🤔", "💯",
          ":tada:", ":+1:", ":thinking_face:", ":eyes:", ":rocket:", ":white_check_mark:")

_HOSTS = ("github.com", "docs.example.com", "example.org", "wiki.internal.example",
          "jira.example.com", "news.example.net")
_PATH_WORDS = ("issues", "pull", "wiki", "browse", "docs", "design", "notes", "blob",
               "main", "release", "runbook", "dashboard")

#: Vocabulary sizes, for the tests and the docs.
ENGLISH_WORDS = len(_ENGLISH)
NON_LATIN_WORDS = len(_NON_LATIN)


def _cumulative_zipf(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (r ** s) for r in range(1, n + 1)))


class TextGen:
    """A reproducible stream of chat messages (see the module docstring)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._en = _cumulative_zipf(len(_ENGLISH), ZIPF_S)
        self._nl = _cumulative_zipf(len(_NON_LATIN), ZIPF_S)
        # ln(size) ~ N(mu, sigma) has mean exp(mu + sigma^2 / 2): solve for mu.
        self._mu = math.log(MEAN_BYTES) - SIZE_SIGMA ** 2 / 2

    def size(self) -> int:
        """A message size in UTF-8 bytes, drawn from the distribution."""
        n = round(self.rng.lognormvariate(self._mu, SIZE_SIGMA))
        return max(MIN_BYTES, min(MAX_BYTES, n))

    def _pick(self, words: Sequence[str], cum: list[float]) -> str:
        x = self.rng.random() * cum[-1]
        return words[min(bisect.bisect_left(cum, x), len(words) - 1)]

    def _token(self) -> str:
        rng = self.rng
        x = rng.random()
        if x < MENTION_P:
            return "@" + rng.choice(_NAMES)
        x -= MENTION_P
        if x < LINK_P:
            return (f"https://{rng.choice(_HOSTS)}/{rng.choice(_PATH_WORDS)}/"
                    f"{rng.randrange(1, 99_999)}")
        x -= LINK_P
        if x < EMOJI_P:
            return rng.choice(_EMOJI)
        if rng.random() < NON_LATIN_SHARE:
            return self._pick(_NON_LATIN, self._nl)
        return self._pick(_ENGLISH, self._en)

    def message(self, size: int | None = None) -> str:
        """One message of about ``size`` UTF-8 bytes (default: drawn with
        ``size()``); never more than ``size`` bytes once it holds a word."""
        target = self.size() if size is None else max(1, size)
        out: list[str] = []
        used = 0
        capital = True
        while True:
            tok = self._token()
            if capital and tok[0].isascii() and tok[0].isalpha():
                tok = tok[0].upper() + tok[1:]
            capital = False
            if self.rng.random() < SENTENCE_END_P:
                tok += self.rng.choice((".", ".", "!", "?", ","))
                capital = tok[-1] != ","
            cost = len(tok.encode()) + (1 if out else 0)
            if out and used + cost > target:
                break
            out.append(tok)
            used += cost
            if used >= target:
                break
        return " ".join(out)


def corpus(n: int, seed: int = 0, size: int | None = None) -> list[str]:
    """The first ``n`` messages of ``TextGen(seed)``."""
    gen = TextGen(seed)
    return [gen.message(size) for _ in range(n)]


#: ``--text`` choices; the first is the default.  ``fixed`` is the old corpus,
#: ``bench.wsclient.timed_text``: ``~ts=<19 digits>~xxx...``.
TEXT_KINDS = ("realistic", "fixed")
