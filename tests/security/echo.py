"""A loopback server that reflects every credential it receives back in its answer.

It speaks just enough of two wire APIs for callproof's client to accept the answer:
OpenAI chat completions (SSE, ``/chat/completions``) and Bedrock ConverseStream (eventstream,
``/model/{id}/converse-stream``). Each credential the request carried (``Authorization``, the
``Basic`` user info httpx derives from the URL, SigV4's access key id and session token, the
query string, every ``x-*`` header) comes back in the answer's text raw, base64-encoded and
percent-encoded, and the body is written a few bytes at a time so that a reflected secret is
split across reads. A chat request for the model ``hostile`` gets JSON nested 1,000 deep
instead. The server runs in its own thread with its own event loop, so subprocesses
(the real ``callproof`` command) can call it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import parse_qsl, quote, urlsplit

from callproof.wire.eventstream import encode_message
from callproof.wire.sse import encode_event

#: Bytes per write: small, so a reflected secret straddles TCP reads.
WRITE_SIZE = 5


def reflected(head: str) -> list[str]:
    """The credential values in a request head."""
    lines = head.split("\r\n")
    target = lines[0].split(" ")[1]
    values = [v for _, v in parse_qsl(urlsplit(target).query)]
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "authorization":
            scheme, _, rest = value.partition(" ")
            if scheme.lower() == "basic":
                values.append(rest)
                values.extend(base64.b64decode(rest).decode().split(":", 1))
            elif scheme.lower() == "bearer":
                values.append(rest)
            else:  # SigV4: the access key id from the credential scope
                m = re.search(r"Credential=([^/]+)/", value)
                if m:
                    values.append(m.group(1))
        elif name.startswith("x-") or name in ("api-key", "ocp-apim-subscription-key"):
            values.append(value)
    return [v for v in values if v]


def _echo_text(values: list[str]) -> str:
    parts = []
    for v in values:
        parts += [v, base64.b64encode(v.encode()).decode(), quote(v, safe="")]
    return "The temperature is 22. Echo: " + " | ".join(parts)


def chat_body(text: str) -> bytes:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return encode_event(
            json.dumps(
                {
                    "id": "chatcmpl-echo",
                    "object": "chat.completion.chunk",
                    "model": "echo",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )
        )

    half = len(text) // 2
    return (
        chunk({"role": "assistant", "content": ""})
        + chunk({"content": text[:half]})
        + chunk({"content": text[half:]})
        + chunk({}, "stop")
        + encode_event("[DONE]")
    )


def bedrock_body(text: str) -> bytes:
    def frame(event: str, payload: dict[str, object]) -> bytes:
        return encode_message(
            {
                ":message-type": "event",
                ":event-type": event,
                ":content-type": "application/json",
            },
            json.dumps(payload).encode(),
        )

    return b"".join(
        [
            frame("messageStart", {"role": "assistant"}),
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}),
            frame("contentBlockStop", {"contentBlockIndex": 0}),
            frame("messageStop", {"stopReason": "end_turn"}),
            frame(
                "metadata",
                {
                    "usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12},
                    "metrics": {"latencyMs": 10},
                },
            ),
        ]
    )


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = 0
            for line in head.split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            request = await reader.readexactly(length) if length else b""
            text = _echo_text(reflected(head))
            if b'"model":"hostile' in request.replace(b" ", b""):
                # A hostile answer: JSON nested past the interpreter's recursion limit.
                body, ctype = encode_event("[" * 1000 + "]" * 1000), "text/event-stream"
            elif "/converse-stream" in head.split("\r\n")[0]:
                body, ctype = bedrock_body(text), "application/vnd.amazon.eventstream"
            else:
                body, ctype = chat_body(text), "text/event-stream"
            writer.write(
                (
                    "HTTP/1.1 200 OK\r\n"
                    f"content-type: {ctype}\r\n"
                    "x-amzn-requestid: echo-1\r\n"
                    "transfer-encoding: chunked\r\n\r\n"
                ).encode()
            )
            for i in range(0, len(body), WRITE_SIZE):
                piece = body[i : i + WRITE_SIZE]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.0005)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextmanager
def echo_server() -> Iterator[str]:
    """Run the echo server on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", 0)
        holder["server"] = server
        holder["port"] = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await server.serve_forever()

    def run() -> None:
        asyncio.set_event_loop(loop)
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        server = holder["server"]
        assert isinstance(server, asyncio.AbstractServer)
        loop.call_soon_threadsafe(server.close)
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
        loop.close()
