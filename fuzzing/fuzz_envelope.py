"""Atheris target: arbitrary bytes and text into the command envelope codecs.

Run::

    pip install atheris
    python fuzzing/fuzz_envelope.py -max_total_time=300

``MsgpackCodec.decode`` and ``JsonCodec.decode`` must either return a
well-formed ``(op, ref, data)`` triple or raise ``BadEnvelope``: any other
exception would become a closed socket (or worse) for a hostile frame.  The
same holds for ``codec.as_id`` on every value a command carries.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from gateway.protocol.codec import BadEnvelope, JsonCodec, MsgpackCodec, as_id


def _check(result: tuple[str, object, dict[str, object]]) -> None:
    op, ref, data = result
    assert isinstance(op, str)
    assert ref is None or isinstance(ref, int | str)
    assert isinstance(data, dict)
    for value in data.values():
        try:
            as_id(value, "field")
        except BadEnvelope:
            pass


def test_one_input(raw: bytes) -> None:
    try:
        _check(MsgpackCodec.decode(raw))
    except BadEnvelope:
        pass
    text = raw.decode("utf-8", "replace")
    try:
        _check(JsonCodec.decode(text))
    except BadEnvelope:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
