"""A raw asyncio HTTP/1.1 server for tests that must see the socket itself: when the client
disconnects, or a body that breaks off mid-chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Script:
    """What the server sends: a status line and headers, then chunks (each chunked-encoded,
    after its delay). ``then``: "end" (terminating chunk), "close" (drop the socket mid-body)
    or "hang" (hold the socket open)."""

    headers: dict[str, str]
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    then: str = "end"
    status: int = 200


@dataclass
class Seen:
    requests: int = 0
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    request_heads: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.requests += 1
            seen.request_heads.append(head)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            lines = [f"HTTP/1.1 {script.status} OK", "transfer-encoding: chunked"]
            lines += [f"{k}: {v}" for k, v in script.headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            for delay, data in script.chunks:
                await asyncio.sleep(delay)
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
            if script.then == "end":
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                await reader.read()  # until the client closes
            elif script.then == "close":
                writer.transport.abort()
                return
            else:
                await reader.read()  # hang: returns when the client disconnects
            seen.disconnected.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            seen.disconnected.set()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()
