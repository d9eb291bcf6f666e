"""Stub for fanout_c, fanout_py.py compiled with fanout_c.pxd."""

from collections.abc import Sequence

from core_ext.fanout_py import FanoutTarget as FanoutTarget
from core_ext.fanout_py import Outbound as Outbound
from core_ext.fanout_py import OutboundQueue as OutboundQueue

def fanout_write(targets: Sequence[FanoutTarget], frame: bytes, limit_bytes: int) -> list[int]: ...
