"""The thumbnail port: untrusted image decoding, kept out of the server process.

Implementation: ``storage/thumbnails.py`` (a child process with address-space
and CPU limits).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Protocol

THUMBNAIL_INPUT_MAX = 64 * 1024 * 1024  # bytes: the largest image a Thumbnailer is given


@dataclass(frozen=True, slots=True)
class Thumbnail:
    png: bytes  # fits in the box the thumbnailer was built for
    width: int  # of the original image, from its header
    height: int


class Thumbnailer(Protocol):
    """Makes thumbnails of untrusted images.

    Contract: ``thumbnail`` never decodes in the calling process; it answers
    None (never raises) for anything it will not or cannot thumbnail: not an
    image it decodes, more than ``max_pixels`` (refused from the header,
    before any pixel is decoded), over ``memory_mb`` of address space, or
    not done within ``timeout_s`` seconds; an error reading ``image`` is
    None too.  The limits are per call, so a settings change applies at
    once.
    """

    async def thumbnail(self, image: AsyncIterable[bytes], *, max_pixels: int,
                        memory_mb: int, timeout_s: float) -> Thumbnail | None:
        """The thumbnail and the original's size, or None (see the contract)."""
