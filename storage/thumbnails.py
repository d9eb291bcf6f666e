"""Thumbnails in a child process (the ``parley.ports.media.Thumbnailer``).

Rules: the server process never decodes an image.  Each thumbnail is made
by a fresh ``python -I`` child with no environment of ours (it needs no
secret) that caps its address space (``RLIMIT_AS``) and CPU time
(``RLIMIT_CPU``), sets Pillow's ``MAX_IMAGE_PIXELS`` and treats its bomb
warning as an error, and refuses images of more than ``max_pixels`` from
the header alone, before any pixel is decoded; the parent kills it at the
time limit.  The image streams in through a pipe; out come the original's
size and a PNG that fits in ``box`` x ``box``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import sys
from collections.abc import AsyncIterable
from pathlib import Path

from parley.ports.media import THUMBNAIL_INPUT_MAX, Thumbnail

log = logging.getLogger("parley.thumbnails")

THUMBNAIL_BOX = 360  # pixels: a thumbnail fits in 360 x 360
THUMBNAIL_OUTPUT_MAX = 4 * 1024 * 1024  # bytes: a thumbnail PNG larger than this is refused

_ROOT = str(Path(__file__).resolve().parents[1])  # so the child imports this checkout
_WORKER_CODE = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
                "from storage.thumbnails import thumbnail_worker; thumbnail_worker()")
_EXIT_TOO_MANY_PIXELS = 3


class ProcessThumbnailer:
    """The ``Thumbnailer`` for one host: each image in a fresh child process."""

    def __init__(self, box: int = THUMBNAIL_BOX) -> None:
        self.box = box

    async def thumbnail(self, image: AsyncIterable[bytes], *, max_pixels: int,
                        memory_mb: int, timeout_s: float) -> Thumbnail | None:
        made = await _make(image, max_pixels, memory_mb, timeout_s, self.box)
        return None if made is None else Thumbnail(*made)


async def _make(image: AsyncIterable[bytes], max_pixels: int, memory_mb: int,
                timeout_s: float, box: int) -> tuple[bytes, int, int] | None:
    """(PNG bytes, width, height of the original) or None.  The image streams
    into a child process; this process never decodes it."""
    env = {"PATH": "/usr/bin:/bin"}  # nothing of ours: the child needs no secret
    cpu_s = max(1, int(timeout_s) + 1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _WORKER_CODE, str(max_pixels),
        str(memory_mb), str(cpu_s), str(box),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def feed() -> None:
        try:
            async for chunk in image:
                stdin.write(chunk)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker refused the image early (too many pixels)
        finally:
            stdin.close()

    async def collect() -> bytes:
        out = bytearray()
        while chunk := await stdout.read(64 * 1024):
            out += chunk
            if len(out) > THUMBNAIL_OUTPUT_MAX + 8:
                break  # refused below; the worker is killed
        return bytes(out)

    feeder = asyncio.create_task(feed())
    try:
        async with asyncio.timeout(timeout_s):
            out = await collect()
            code = await proc.wait() if len(out) <= THUMBNAIL_OUTPUT_MAX + 8 else -1
            await feeder
    except TimeoutError:
        log.warning("thumbnail took over %.1f s; none made", timeout_s)
        return None
    except Exception:  # the image could not be read (a blob store error): no thumbnail
        log.warning("thumbnail: could not read the image", exc_info=True)
        return None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if not feeder.done():
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
    if code != 0 or len(out) < 9:
        if code == _EXIT_TOO_MANY_PIXELS:
            log.info("no thumbnail: more than %d pixels", max_pixels)
        return None
    width, height = struct.unpack(">II", out[:8])
    return out[8:], width, height


def thumbnail_worker() -> None:
    """The child process: limits first, then Pillow.  argv: max pixels,
    memory MiB, CPU seconds, box.  stdin: the image; stdout: width, height
    (two big-endian uint32) and the PNG thumbnail.  Exit 3: too many pixels;
    any other failure: non-zero."""
    import io
    import resource
    import warnings

    max_pixels, mem_mb, cpu_s, box = (int(a) for a in sys.argv[1:5])
    resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    from PIL import Image

    # Pillow checks MAX_IMAGE_PIXELS when it reads the header (before any
    # pixel is decoded): a warning above it, an error above twice; both fail.
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    data = sys.stdin.buffer.read(THUMBNAIL_INPUT_MAX + 1)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size  # from the header; nothing decoded yet
            if width < 1 or height < 1 or width * height > max_pixels:
                sys.exit(_EXIT_TOO_MANY_PIXELS)
            im.draft("RGB", (box, box))  # JPEG: decode at a reduced scale
            im.thumbnail((box, box))
            small = im if im.mode in {"RGB", "RGBA", "L", "LA", "P"} else im.convert("RGBA")
            buf = io.BytesIO()
            small.save(buf, "PNG")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        sys.exit(_EXIT_TOO_MANY_PIXELS)
    sys.stdout.buffer.write(struct.pack(">II", width, height) + buf.getvalue())
