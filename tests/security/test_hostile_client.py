"""Hostile bodies through the client and the CLI (issue 10, items 7 and 10): a gzip or deflate
bomb is cut at the decoded-size cap, 1,000-deep JSON is a protocol error and never a traceback,
and ``call -v`` prints a bounded account of a keep-alive flood."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import httpx
import pytest

from callproof import capture as capture_module
from callproof import client as client_module
from callproof.capture import read_capture
from callproof.cli.call import VERBOSE_ROWS, _raw_lines
from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.errors import InvalidEventError, ProtocolError
from callproof.wire.sse import encode_comment, encode_event
from tests.client.conftest import make_target
from tests.client.rawserver import Script, raw_server

CONV = Conversation(messages=(UserMessage.text("hi"),))


def _keepalives(n: int) -> bytes:
    return encode_comment("keep-alive") * n


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compression_bomb_is_cut_at_the_cap(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 4 << 20)
    plain = _keepalives(2_000_000)  # ~26 MB of legal SSE comments
    packed = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
    assert len(packed) < len(plain) // 100
    chunks = [(0.0, packed[i : i + 16384]) for i in range(0, len(packed), 16384)]
    script = Script(
        headers={"content-type": "text/event-stream", "content-encoding": encoding},
        chunks=chunks,
    )
    async with raw_server(script) as (url, _seen):
        target = make_target("openai-completions", base_url=url + "/v1")
        async with Client() as client:
            with pytest.raises(ProtocolError, match=f"content-encoding {encoding}") as info:
                await client.complete(target, CONV)
    assert info.value.outcome == "protocol_error"


async def test_deep_json_through_the_client_is_a_protocol_error() -> None:
    body = encode_event("[" * 1000 + "]" * 1000)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async with Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InvalidEventError):
            await client.complete(make_target("openai-completions"), CONV)


async def test_usage_1e999_through_the_client() -> None:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    body = (
        encode_event(json.dumps(chunk))
        + b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1e999,"completion_tokens":1}}\n\n'
        + encode_event("[DONE]")
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async with Client(transport=httpx.MockTransport(handler)) as client:
        response = await client.complete(make_target("openai-completions"), CONV)
    assert response.text == "hi"
    assert response.usage is not None
    assert response.usage.output_tokens == 1


async def test_capture_raw_lines_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_module, "MAX_RAW_LINES", 100)
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
    }
    body = _keepalives(1000) + encode_event(json.dumps(chunk)) + encode_event("[DONE]")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    path = tmp_path / "flood.jsonl"
    async with Client(transport=httpx.MockTransport(handler)) as client:
        response = await client.complete(make_target("openai-completions"), CONV, capture=path)
    assert response.keepalives == 1000
    cap = read_capture(path)
    assert len(cap.raw) == 101
    assert cap.raw[-1]["kind"] == "dropped"
    assert cap.raw[-1]["data"] == 1000 + 2 - 100
    assert b"".join(d for _, d in cap.chunks) == body  # the bytes are all kept


def test_verbose_reads_a_bounded_number_of_raw_units(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        fh.write('{"type":"meta","format":"callproof-capture","version":1}\n')
        for i in range(VERBOSE_ROWS * 3):
            fh.write(
                json.dumps(
                    {"type": "raw", "t": i, "kind": "comment", "data": "k"}, separators=(",", ":")
                )
                + "\n"
            )
    raw = _raw_lines(path)
    assert len(raw) == VERBOSE_ROWS + 1
    assert raw[-1] == {"kind": "more", "data": VERBOSE_ROWS * 2}


def test_a_hostile_target_does_not_stop_a_probe(tmp_path: Path) -> None:
    # issue 10 item 7: one attempt's bare RecursionError cancelled every worker of a probe.
    from click.testing import CliRunner

    from callproof.cli import cli
    from tests.security.echo import echo_server

    with echo_server() as url:
        (tmp_path / "callproof.toml").write_text(
            f"""\
[defaults]
n = 3
concurrency = 4
scenarios = ["tool-result"]
timeouts = {{ connect = 5.0, first_event = 20.0, idle = 20.0, deadline = 60.0 }}
[providers.echo]
api = "openai-completions"
endpoint = "{url}/v1"
[targets.hostile]
provider = "echo"
model = "hostile"
[targets.fine]
provider = "echo"
model = "fine"
""",
            encoding="utf-8",
        )
        result = CliRunner().invoke(
            cli,
            [
                "run",
                "--config",
                str(tmp_path / "callproof.toml"),
                "--out",
                str(tmp_path / "run"),
                "--no-history",
                "--json",
            ],
            catch_exceptions=False,
        )
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout)
    records = [
        json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    ]
    by_target: dict[str, list[str]] = {}
    for record in records:
        by_target.setdefault(record["target"], []).append(record["outcome"])
    assert by_target["hostile"] == ["protocol_error"] * 3
    assert by_target["fine"] == ["ok"] * 3
    assert summary


@pytest.mark.parametrize("kind", ["comments", "events"])
def test_capture_scrubbing_memory_is_bounded_for_a_flood(kind: str) -> None:
    from callproof.scrub_body import SEGMENT_BYTES, BodyScrubber

    unit = _keepalives(1) if kind == "comments" else encode_event('{"choices":[]}')
    read_size = 65536
    body = unit * ((4 << 20) // len(unit))
    scrubber = BodyScrubber(eventstream=False)
    out: list[bytes] = []
    peak = 0
    for i in range(0, len(body), read_size):
        out += [d for _, d in scrubber.feed(i / read_size, body[i : i + read_size])]
        peak = max(peak, len(scrubber._buf))
    out += [d for _, d in scrubber.finish()]
    assert b"".join(out) == body
    assert peak <= 2 * SEGMENT_BYTES + read_size
