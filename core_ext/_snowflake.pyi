"""Stub for the compiled snowflake kernel (twin: _snowflake_py.py)."""

from collections.abc import Callable

class SnowflakeGenerator:
    def __init__(
        self,
        worker_id: int,
        epoch_ms: int = ...,
        clock_ms: Callable[[], int] | None = None,
    ) -> None: ...
    @property
    def worker_id(self) -> int: ...
    def next_id(self) -> int: ...

def snowflake_parts(snowflake: int, epoch_ms: int = ...) -> tuple[int, int, int]: ...
