"""Keep serving the open HTTP/2 streams of a connection whose client sent GOAWAY.

RFC 9113 §6.8: GOAWAY stops *new* streams; streams already open run to their end. hypercorn
(0.18) closes the whole connection when the client's GOAWAY arrives, because h2's connection
state machine refuses to send after it. The AWS SDK for JavaScript v3's default handler
(NodeHttp2Handler) opens an isolated session per event stream and closes it (GOAWAY) the moment
the response headers arrive, so every ConverseStream whose first frame was not already sent was
cut with nothing in it (the SDK then ends the stream silently: zero events, no error).

:func:`serve_open_streams_after_goaway` patches hypercorn's ``H2Protocol`` once, process-wide:
a GOAWAY with streams still open puts h2's connection state back to open (the client opens
nothing new after it) and the connection closes when its last stream ends.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve_open_streams_after_goaway"]

_FLAG = "_callproof_goaway_pending"


def serve_open_streams_after_goaway() -> None:
    """Apply the patch (idempotent)."""
    import h2.events
    from h2.connection import ConnectionState
    from hypercorn.events import Closed
    from hypercorn.protocol.events import StreamClosed
    from hypercorn.protocol.h2 import H2Protocol

    if getattr(H2Protocol, "_callproof_patched", False):
        return
    handle_events = H2Protocol._handle_events
    stream_send = H2Protocol.stream_send

    async def _handle_events(self: Any, events: list[Any]) -> None:
        kept = []
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated) and self.streams:
                setattr(self, _FLAG, True)
                self.connection.state_machine.state = ConnectionState.SERVER_OPEN
                continue
            kept.append(event)
        await handle_events(self, kept)

    async def _stream_send(self: Any, event: Any) -> None:
        await stream_send(self, event)
        if isinstance(event, StreamClosed) and getattr(self, _FLAG, False) and not self.streams:
            await self._flush()
            await self.send(Closed())

    H2Protocol._handle_events = _handle_events  # type: ignore[method-assign]
    H2Protocol.stream_send = _stream_send  # type: ignore[method-assign]
    H2Protocol._callproof_patched = True  # type: ignore[attr-defined]
