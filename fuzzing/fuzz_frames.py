"""Atheris target: arbitrary bytes into the WebSocket stack.

Run::

    pip install atheris
    python fuzzing/fuzz_frames.py -max_total_time=300      # libFuzzer flags pass through
    python fuzzing/fuzz_frames.py -runs=100000 corpus_dir/

Each input is split into chunks (sizes taken from the input itself) and fed to

* ``FrameParser`` of every implementation: only ``FrameError`` may escape;
* ``gateway.websocket.ServerConnection`` on every implementation: nothing may
  escape; every event is a documented type; a ``ProtocolFailure`` or
  ``CloseReceived`` leaves the connection CLOSED and is the last event that
  produces anything.

Differential checks: the Python and compiled implementations give identical
results, and feeding the input in one chunk gives the same events as feeding
it in pieces (chunking never changes a parse).  Limits are small so the 1009
paths are reachable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    import core_ext
    from core_ext import FrameError
    from gateway.websocket import (
        BinaryMessage,
        CloseReceived,
        ConnectionState,
        PingReceived,
        PongReceived,
        ProtocolFailure,
        ServerConnection,
        TextMessage,
        WsLimits,
    )

EVENT_TYPES = (TextMessage, BinaryMessage, PingReceived, PongReceived, CloseReceived,
               ProtocolFailure)
LIMITS = WsLimits(max_frame_bytes=2048, max_message_bytes=4096, max_fragments=8)


def _implementations() -> list[core_ext.Kernels]:
    impls = [core_ext.kernels("python")]
    try:
        impls.append(core_ext.kernels("cython"))
    except ImportError as exc:
        print(f"WARNING: compiled core_ext not fuzzed: {exc}", file=sys.stderr)
    return impls


IMPLS = _implementations()


def _chunks(fdp: atheris.FuzzedDataProvider) -> list[bytes]:
    sizes = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    return chunks


def _parse(impl: core_ext.Kernels, chunks: list[bytes], require_mask: bool) -> object:
    parser = impl.FrameParser(LIMITS.max_frame_bytes, require_mask)
    frames = []
    try:
        for chunk in chunks:
            frames += parser.feed(chunk)
    except FrameError as exc:
        frames += exc.frames
        return ([(bool(f.fin), f.opcode, f.payload) for f in frames], exc.close_code)
    return ([(bool(f.fin), f.opcode, f.payload) for f in frames], parser.buffered_bytes)


def _converse(impl: core_ext.Kernels, chunks: list[bytes]) -> tuple[list[object], bytes]:
    conn = ServerConnection(LIMITS, kernels=impl)
    events: list[object] = []
    out = b""
    for chunk in chunks:
        new = conn.receive_data(chunk)
        for index, event in enumerate(new):
            assert isinstance(event, EVENT_TYPES), event
            if isinstance(event, ProtocolFailure | CloseReceived):
                assert conn.state is ConnectionState.CLOSED
                assert index == len(new) - 1, "events after the end of the connection"
        events += new
        out += conn.data_to_send()
    if conn.state is ConnectionState.CLOSED:
        assert conn.receive_data(b"\x81\x80\x00\x00\x00\x00") == []
    return events, out


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    require_mask = fdp.ConsumeBool()
    chunks = _chunks(fdp)
    whole = [b"".join(chunks)]
    parses = [_parse(impl, chunks, require_mask) for impl in IMPLS]
    assert all(p == parses[0] for p in parses), parses
    assert _parse(IMPLS[0], whole, require_mask) == parses[0]
    conversations = [_converse(impl, chunks) for impl in IMPLS]
    assert all(c == conversations[0] for c in conversations), conversations
    assert _converse(IMPLS[0], whole) == conversations[0]


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
