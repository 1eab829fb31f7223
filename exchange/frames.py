"""The bid server ↔ settlement process protocol: typed, length-prefixed frames on a
Unix stream socket.

    server → settler   TRADE    one won trade (its JSON), to journal and book
                       REQUEST  [request id, kind, payload]: a notice, a campaign save, ...
    settler → server   READY    {"journal": id}: recovered and listening
                       DURABLE  how many of this connection's trades are synced
                       REPLY    [request id, error kind or "", result]
                       RELEASE  [campaign id, day, micros]: budget given back
"""

from __future__ import annotations

import struct

TRADE, REQUEST = b"T", b"Q"
READY, DURABLE, REPLY, RELEASE = b"R", b"D", b"P", b"B"
HEADER = struct.Struct("<cI")  # type, payload length
COUNT = struct.Struct("<Q")  # a DURABLE frame's payload


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def split(buffer: bytearray) -> list[tuple[bytes, bytes]]:
    """Take every complete frame off the front of `buffer` (what is left is partial)."""
    frames, pos = [], 0
    while len(buffer) - pos >= HEADER.size:
        kind, length = HEADER.unpack_from(buffer, pos)
        end = pos + HEADER.size + length
        if end > len(buffer):
            break
        frames.append((kind, bytes(buffer[pos + HEADER.size : end])))
        pos = end
    del buffer[:pos]
    return frames
