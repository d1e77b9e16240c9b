"""Fixtures for the emulator tests: a real emulator (hypercorn) on loopback and boto3 clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from callproof.emulator import EmulatorServer

WEATHER_TOOL_CONFIG: dict[str, Any] = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Get the current weather for a city.",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    }
                },
            }
        }
    ]
}

FIRST_TURN: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Weather for Tokyo?"}]}]

#: The seed's conversation: question, tool call, tool result.
TOOL_RESULT_TURN: list[dict[str, Any]] = [
    *FIRST_TURN,
    {
        "role": "assistant",
        "content": [
            {"text": "Getting it."},
            {
                "toolUse": {
                    "toolUseId": "abc123xyz",
                    "name": "get_weather",
                    "input": {"city": "Tokyo"},
                }
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "abc123xyz", "content": [{"text": '{"temp":22}'}]}}
        ],
    },
]


@pytest.fixture(scope="session")
def fast_server() -> Iterator[EmulatorServer]:
    """The emulator with the seed's models, no latency and no faults."""
    with EmulatorServer(preset="fast", seed=1) as server:
        yield server


BedrockFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def boto_session() -> Any:
    """One boto3 session for the suite: its loaded service model makes new clients cheap."""
    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="test-secret"
    )


@pytest.fixture
def bedrock(boto_session: Any) -> BedrockFactory:
    """``bedrock(server, read_timeout=1.0, fault=None)`` -> a real boto3 bedrock-runtime client.

    ``fault`` adds the ``x-callproof-fault`` header to every request of that client;
    ``fresh_session=True`` reads the environment anew (bearer-token tests).
    """

    def make(
        server: EmulatorServer,
        *,
        read_timeout: float = 1.0,
        fault: str | None = None,
        verify: Any = None,
        **kwargs: Any,
    ) -> Any:
        fresh = kwargs.pop("fresh_session", False)
        session = boto3.session.Session() if fresh else boto_session
        client = session.client(
            "bedrock-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=kwargs.pop("aws_access_key_id", "AKIDEXAMPLE"),
            aws_secret_access_key=kwargs.pop("aws_secret_access_key", "test-secret"),
            verify=verify,
            config=Config(
                retries={"total_max_attempts": 1},
                read_timeout=read_timeout,
                connect_timeout=2,
            ),
            **kwargs,
        )
        if fault is not None:

            def add_header(request: Any, **_: Any) -> None:
                request.headers["x-callproof-fault"] = fault

            client.meta.events.register("before-sign.bedrock-runtime.*", add_header)
        return client

    return make
