"""The fast HTTP/1.1 front (callproof.emulator.fastfront) against hypercorn: the same bytes for
the same seed and request, faults included, and the same limits (pipelining, keep-alive, idle
timeout, malformed requests, hand-over of everything it does not serve)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from callproof.emulator import EmulatorServer
from callproof.emulator.bedrock_wire import Event, frame, padded_frame
from callproof.http_server import ServerLimits
from callproof.wire.eventstream import EventStreamDecoder

from .conftest import FIRST_TURN, TOOL_RESULT_TURN, WEATHER_TOOL_CONFIG

STREAM = "/model/amazon.nova-pro-v1%3A0/converse-stream"
CONVERSE = "/model/amazon.nova-pro-v1%3A0/converse"


def request(path: str, body: bytes, *, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


def exchange(port: int, data: bytes, timeout: float = 20.0) -> tuple[bytes, str]:
    """Everything the server sends until it closes, and how it ended ("eof" or "reset")."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received, "reset"
            if not chunk:
                return received, "eof"
            received += chunk


def normalised(raw: bytes) -> bytes:
    """The answer without what differs by design: the reason phrase (not compared), the
    date, the request id (salted per process) and the header names' case."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if lines and lines[0].startswith(b"HTTP/1.1 "):
        lines[0] = lines[0][:12]
    kept = [
        re.sub(rb"^([^:]+):", lambda m: m.group(1).lower() + b":", line)
        for line in lines
        if not line.lower().startswith((b"date:", b"x-amzn-requestid:", b"x-request-id:"))
    ]
    # the clock's second (the two servers may answer either side of a second's end)
    body = re.sub(rb'"(created|created_at|completed_at)":\s*\d+', rb'"\1":0', body)
    head = re.sub(rb"gen-\d+-", b"gen-0-", b"\r\n".join(kept))  # OpenRouter ids hold it too
    return head + sep + re.sub(rb"gen-\d+-", b"gen-0-", body)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[EmulatorServer, EmulatorServer]]:
    """The same emulator twice, same seed: the fast front, and hypercorn alone."""
    with (
        EmulatorServer(preset="healthy", seed=1234, fast=True) as fast,
        EmulatorServer(preset="healthy", seed=1234, fast=False) as slow,
    ):
        yield fast, slow


def both(pair: tuple[EmulatorServer, EmulatorServer], data: bytes) -> list[tuple[bytes, str]]:
    """The same request to both servers at once (their request counters stay in step)."""
    results: list[tuple[bytes, str]] = [(b"", ""), (b"", "")]

    def one(i: int, server: EmulatorServer) -> None:
        results[i] = exchange(server.port, data)

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(pair)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


FAULTS = [
    None,
    "latency:0.05",
    "close_without_stop",
    "truncate_frame",
    "corrupt_crc",
    "stream_exception:throttlingException",
    "http_error:429",
    "http_error:503",
    "slow_body:40000",
    "empty_response",
    "stop_reason:max_tokens",
    "malformed_tool_args",
    "tool_call_in_text",
]


@pytest.mark.parametrize("path", [STREAM, CONVERSE])
@pytest.mark.parametrize("fault", FAULTS)
def test_the_fast_front_sends_hypercorns_bytes(
    pair: tuple[EmulatorServer, EmulatorServer], path: str, fault: str | None
) -> None:
    messages = TOOL_RESULT_TURN if fault is None else FIRST_TURN
    body = json.dumps({"messages": messages, "toolConfig": WEATHER_TOOL_CONFIG}).encode()
    headers = {} if fault is None else {"x-callproof-fault": fault}
    (fast, fast_end), (slow, slow_end) = both(pair, request(path, body, headers=headers))
    assert fast.startswith(b"HTTP/1.1 "), fast[:200]
    assert fast_end == slow_end
    assert normalised(fast) == normalised(slow)
    assert fast.split(b"\r\n", 1)[0].endswith((b" OK", b" Too Many Requests", b" Unavailable"))


OPENAI_FAULTS = [
    None,
    "latency:0.05",
    "close_without_stop",
    "http_error:429",
    "tool_call_in_text",
    "stream_exception:throttlingException",
]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize("fault", OPENAI_FAULTS)
def test_the_openai_routes_send_hypercorns_bytes(
    pair: tuple[EmulatorServer, EmulatorServer], path: str, fault: str | None, stream: bool
) -> None:
    question = "Weather for Tokyo?"
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    payload: dict[str, object] = {"model": "moonshotai/kimi-k2.5", "stream": stream}
    if path == "/v1/responses":
        payload["input"] = question
    else:
        payload["messages"] = [{"role": "user", "content": question}]
        payload["tools"] = tools
    body = json.dumps(payload).encode()
    headers = {} if fault is None else {"x-callproof-fault": fault}
    (fast, fast_end), (slow, slow_end) = both(pair, request(path, body, headers=headers))
    assert fast.startswith(b"HTTP/1.1 "), fast[:200]
    assert fast_end == slow_end
    assert normalised(fast) == normalised(slow)
    status = fast.split(b" ", 2)[1]
    assert status == (b"429" if fault == "http_error:429" else b"200"), fast[:300]


@pytest.mark.parametrize("fault", ["reset_before_headers", "reset_mid_body"])
def test_resets_are_resets_on_both(pair: tuple[EmulatorServer, EmulatorServer], fault: str) -> None:
    body = json.dumps({"messages": FIRST_TURN}).encode()
    (fast, fast_end), (slow, slow_end) = both(
        pair, request(STREAM, body, headers={"x-callproof-fault": fault})
    )
    assert fast_end == slow_end == "reset"
    if fault == "reset_before_headers":
        assert fast == slow == b""
    else:  # the headers were sent before the reset on both
        assert normalised(fast).split(b"\r\n\r\n")[0] == normalised(slow).split(b"\r\n\r\n")[0]


def test_a_seeded_sequence_is_the_same_on_both(pair: tuple[EmulatorServer, EmulatorServer]) -> None:
    """Several requests in turn: paddings, jittered delays and latencyMs follow the seed."""
    body = json.dumps({"messages": TOOL_RESULT_TURN}).encode()
    for _ in range(3):
        (fast, _), (slow, _) = both(pair, request(STREAM, body))
        assert normalised(fast) == normalised(slow)


def test_cached_frames_are_the_frames() -> None:
    import random

    event = Event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Tokyo"}}, 1)
    for seed in range(50):
        rng = random.Random(seed)
        pad = 1 + int(random.Random(seed).random() * 62)
        assert frame(event, rng) == padded_frame(event, pad)


# -- limits -------------------------------------------------------------------------------------


def _responses(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(status line, body) of each chunked or content-length answer in ``raw``."""
    out = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        if b"content-length" in fields:
            size = int(fields[b"content-length"])
            body, raw = raw[:size], raw[size:]
        else:
            parts = []
            while True:
                size_line, _, raw = raw.partition(b"\r\n")
                size = int(size_line, 16)
                parts.append(raw[:size])
                raw = raw[size + 2 :]
                if size == 0:
                    break
            body = b"".join(parts)
        out.append((lines[0], body))
    return out


def test_pipelined_keep_alive_requests_are_answered_in_order() -> None:
    body = json.dumps({"messages": FIRST_TURN}).encode()
    keep = request(STREAM, body).replace(b"Connection: close", b"Connection: keep-alive")
    error = request(STREAM, body, headers={"x-callproof-fault": "http_error:500"})
    error = error.replace(b"Connection: close", b"Connection: keep-alive")
    last = request(CONVERSE, body)
    with EmulatorServer(preset="fast") as server:
        raw, end = exchange(server.port, keep + error + keep + last)
    assert end == "eof"  # the last asked to close
    answers = _responses(raw)
    assert [a[0][:12] for a in answers] == [b"HTTP/1.1 200", b"HTTP/1.1 500"] + [
        b"HTTP/1.1 200"
    ] * 2
    decoder = EventStreamDecoder()
    events = decoder.feed(answers[0][1])
    assert events[-1].headers[":event-type"] == "metadata"
    assert json.loads(answers[3][1])["stopReason"] == "end_turn"


def test_a_request_it_does_not_serve_goes_to_hypercorn_on_the_same_connection() -> None:
    body = json.dumps({"messages": FIRST_TURN}).encode()
    first = request(STREAM, body).replace(b"Connection: close", b"Connection: keep-alive")
    models = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with EmulatorServer(preset="fast") as server:
        raw, _ = exchange(server.port, first + models + request(STREAM, body))
    answers = _responses(raw)
    assert [a[0][:12] for a in answers] == [b"HTTP/1.1 200"] * 3
    assert json.loads(answers[1][1])["object"] == "list"


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"POST " + STREAM.encode() + b" HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST " + STREAM.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
    ],
)
def test_a_malformed_request_gets_a_400_and_no_traceback(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), EmulatorServer(preset="fast") as server:
        raw, _ = exchange(server.port, data)
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_an_oversized_head_on_a_hot_route_is_cut_off() -> None:
    """The front buffers a head up to the limit only, then hypercorn refuses it (431 or a
    close), as it does without the front; the server serves on."""
    limits = ServerLimits(max_header_bytes=8 * 1024)
    body = json.dumps({"messages": FIRST_TURN}).encode()
    with EmulatorServer(preset="fast", limits=limits) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST " + STREAM.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Big: ")
            answer = b""
            try:
                for _ in range(200):  # 200 x 4 KiB, far past the 8 KiB limit
                    sock.sendall(b"a" * 4096)
            except OSError:
                pass  # the server closed: the header never grows past the limit
            with contextlib.suppress(OSError):
                answer = sock.recv(65536)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
        raw, _ = exchange(server.port, request(STREAM, body))
        assert raw.startswith(b"HTTP/1.1 200")


def test_idle_keep_alive_connections_are_closed_after_the_header_timeout() -> None:
    limits = ServerLimits(header_timeout_s=0.5)
    body = json.dumps({"messages": FIRST_TURN}).encode()
    keep = request(CONVERSE, body).replace(b"Connection: close", b"Connection: keep-alive")
    with EmulatorServer(preset="fast", limits=limits) as server:
        started = time.monotonic()
        raw, end = exchange(server.port, keep)  # returns once the server closes
        took = time.monotonic() - started
    assert end == "eof"
    assert raw.startswith(b"HTTP/1.1 200")
    assert 0.4 < took < 20  # closed by the idle timeout, not at once and not never


def _complete(raw: bytes) -> bool:
    """Whether ``raw`` holds a whole Content-Length answer (and nothing after it)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            assert len(body) <= int(value), "bytes past the answer"
            return len(body) == int(value)
    raise AssertionError("no content-length")


def test_each_request_restarts_the_idle_clock() -> None:
    """The idle timer is lazy (one per connection, moved by each request): a connection whose
    requests come less than the timeout apart stays open past the first deadline."""
    limits = ServerLimits(header_timeout_s=2.0)
    body = json.dumps({"messages": FIRST_TURN}).encode()
    keep = request(CONVERSE, body).replace(b"Connection: close", b"Connection: keep-alive")
    with (
        EmulatorServer(preset="fast", limits=limits) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock,
    ):
        started = time.monotonic()
        for turn in range(4):  # 0.8 s apart: the last after 2.4 s, past the first 2 s deadline
            sock.sendall(keep)
            answer = b""
            while not _complete(answer):
                chunk = sock.recv(65536)
                assert chunk, f"closed before answer {turn + 1}, within the idle timeout"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            if turn < 3:
                time.sleep(0.8)
        assert time.monotonic() - started > 2.0


# -- OpenAI chat plans: the same bytes and draws, cold and warm ----------------------------------

CHAT_PLAN = {
    "models": [
        {"id": "gpt-4o", "flavour": "openai", "first_event_s": 0.01, "tokens_per_s": 5000},
        {"id": "moonshotai/kimi-k2.5", "flavour": "openrouter", "first_event_s": 0},
    ],
    "rules": [
        {
            "model": "*",
            "api": "openai",
            "faults": [
                {"fault": "latency:0.02", "probability": 0.3},
                {"fault": "http_error:429", "probability": 0.1},
                {"fault": "close_without_stop", "probability": 0.1},
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def chat_pair() -> Iterator[tuple[EmulatorServer, EmulatorServer]]:
    """An OpenAI-flavoured model (ids, obfuscations, seeded faults) on both fronts."""
    from callproof.emulator.faults import FaultPlan

    plan = FaultPlan.from_mapping(CHAT_PLAN)
    with (
        EmulatorServer(faults=plan, seed=99, fast=True) as fast,
        EmulatorServer(faults=plan, seed=99, fast=False) as slow,
    ):
        yield fast, slow


def chat_body(model: str, *, stream: bool, usage: bool, tools: bool) -> bytes:
    payload: dict[str, object] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Weather for Tokyo?"}],
    }
    if usage and stream:
        payload["stream_options"] = {"include_usage": True}
    if tools:
        payload["tools"] = [
            {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
        ]
    return json.dumps(payload).encode()


@pytest.mark.parametrize("model", ["gpt-4o", "moonshotai/kimi-k2.5"])
@pytest.mark.parametrize(("stream", "usage"), [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("tools", [True, False])
def test_planned_chat_answers_are_the_routes_bytes_cold_and_warm(
    chat_pair: tuple[EmulatorServer, EmulatorServer],
    model: str,
    stream: bool,
    usage: bool,
    tools: bool,
) -> None:
    """The first request of a body is planned cold, the next ones warm; each one's bytes equal
    hypercorn's for the same seed, so the ids, obfuscations, faults and headers drawn per
    request follow the seed in the same order (seeded faults included)."""
    body = chat_body(model, stream=stream, usage=usage, tools=tools)
    statuses = set()
    for _ in range(6):
        (fast, fast_end), (slow, slow_end) = both(chat_pair, request("/v1/chat/completions", body))
        assert fast.startswith(b"HTTP/1.1 "), fast[:200]
        assert fast_end == slow_end
        assert normalised(fast) == normalised(slow)
        statuses.add(fast.split(b" ", 2)[1])
    assert b"200" in statuses


def test_planned_chat_answers_vary_per_request() -> None:
    """The cached template is filled per request: a fresh id and fresh obfuscations."""
    from callproof.emulator.faults import FaultPlan

    body = chat_body("gpt-4o", stream=True, usage=True, tools=False)
    ids, obfuscations = set(), set()
    with EmulatorServer(faults=FaultPlan.from_mapping({"models": CHAT_PLAN["models"]})) as server:
        for _ in range(4):
            raw, _ = exchange(server.port, request("/v1/chat/completions", body))
            ids.update(re.findall(rb'"id":"(chatcmpl-[^"]+)"', raw))
            obfuscations.update(re.findall(rb'"obfuscation":"([^"]*)"', raw))
            assert b"\xee\x80\x80" not in raw  # no slot marker is ever sent
        planner = server.app.state.fast_routes.chat_planner
        assert list(planner._prepared) == [(False, body)]  # served from the plan, not the route
    assert len(ids) >= 3
    assert len(obfuscations) > 10


@pytest.mark.parametrize(
    "fault", ["latency:0.03", "http_error:503", "stop_reason:max_tokens", "bogus", None]
)
def test_forced_faults_on_planned_chat_are_the_routes_bytes(
    chat_pair: tuple[EmulatorServer, EmulatorServer], fault: str | None
) -> None:
    body = chat_body("gpt-4o", stream=True, usage=False, tools=True)
    headers = {} if fault is None else {"x-callproof-fault": fault}
    for _ in range(2):
        (fast, fast_end), (slow, slow_end) = both(
            chat_pair, request("/v1/chat/completions", body, headers=headers)
        )
        assert fast_end == slow_end
        assert normalised(fast) == normalised(slow)


def responses_body(model: str, *, stream: bool, store: bool, tools: bool) -> bytes:
    payload: dict[str, object] = {"model": model, "stream": stream, "input": "Weather?"}
    if not store:
        payload["store"] = False
    if tools:
        payload["tools"] = [{"type": "function", "name": "get_weather", "parameters": {}}]
    return json.dumps(payload).encode()


@pytest.mark.parametrize("model", ["gpt-4o", "moonshotai/kimi-k2.5"])
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("store", "tools"), [(True, True), (False, False), (True, False)])
def test_planned_responses_are_the_routes_bytes_cold_and_warm(
    chat_pair: tuple[EmulatorServer, EmulatorServer],
    model: str,
    stream: bool,
    store: bool,
    tools: bool,
) -> None:
    """As for chat: ids, item ids and obfuscations drawn per request in the route's order;
    a stored response is kept on both (a follow-up naming it gets the same answer)."""
    body = responses_body(model, stream=stream, store=store, tools=tools)
    statuses = set()
    for _ in range(5):
        (fast, fast_end), (slow, slow_end) = both(chat_pair, request("/v1/responses", body))
        assert fast.startswith(b"HTTP/1.1 "), fast[:200]
        assert fast_end == slow_end
        assert normalised(fast) == normalised(slow)
        statuses.add(fast.split(b" ", 2)[1])
    assert b"200" in statuses
    assert (True, body) in chat_pair[0].app.state.fast_routes.chat_planner._prepared  # planned
    found = re.search(rb'"id": ?"(resp_[0-9a-f]+|gen-[^"]+)"', fast)
    if store and found and fast.split(b" ", 2)[1] == b"200":
        follow = {"model": model, "input": "And tomorrow?", "previous_response_id": ""}
        follow["previous_response_id"] = found.group(1).decode()
        (f2, _), (s2, _) = both(chat_pair, request("/v1/responses", json.dumps(follow).encode()))
        assert f2.split(b" ", 2)[1] == s2.split(b" ", 2)[1]
