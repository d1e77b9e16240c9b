"""Python frameworks and SDKs against the emulator, unchanged, with their own tool loops.

Pinned in uv.lock (dev group): langchain-aws 1.9.1, strands-agents 1.62.0, pydantic-ai-slim
2.68.0, aiobotocore 3.10.0. What the real services make each do, from their source and the
Bedrock Converse API reference: a ``tool_use`` turn is executed and its result sent back as a
``toolResult`` block; botocore raises a modeled in-stream exception as ``EventStreamError``
naming its type (botocore/eventstream.py, parsers.py); a connection reset before the answer is
``ConnectionClosedError`` in aiobotocore (aiobotocore/httpsession.py maps aiohttp's
ServerDisconnectedError/ClientConnectionError; issue 9 G6).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiobotocore.session
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from callproof.emulator import EmulatorServer

NOVA = "amazon.nova-pro-v1:0"
CREDENTIALS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "test-secret"}
NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=20, connect_timeout=5)


def get_weather(city: str) -> dict[str, Any]:
    """Get the current weather for a city."""
    return {"city": city, "temp": 22, "unit": "C"}


def boto_client(server: EmulatorServer, fault: str | None = None) -> Any:
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=NO_RETRIES,
        **CREDENTIALS,
    )
    if fault is not None:

        def add_header(request: Any, **_: Any) -> None:
            request.headers["x-callproof-fault"] = fault

        client.meta.events.register("before-sign.bedrock-runtime.*", add_header)
    return client


def test_langchain_aws_tool_call_and_stream(emulator: EmulatorServer) -> None:
    from langchain_aws import ChatBedrockConverse

    llm = ChatBedrockConverse(model=NOVA, client=boto_client(emulator), region_name="us-east-1")
    message = llm.bind_tools([get_weather]).invoke("Weather for Tokyo?")
    assert message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "Tokyo"}
    chunks = list(llm.stream("Hello there"))
    text = "".join(c.text for c in chunks)  # content blocks joined (langchain-core 1.x)
    assert text == "Hello! How can I help you today?"


def test_langchain_aws_mid_stream_throttling_raises(emulator: EmulatorServer) -> None:
    from langchain_aws import ChatBedrockConverse

    client = boto_client(emulator, fault="stream_exception:throttlingException")
    llm = ChatBedrockConverse(model=NOVA, client=client, region_name="us-east-1")
    with pytest.raises(botocore.exceptions.EventStreamError, match="throttlingException"):
        list(llm.stream("Hello there"))


def test_strands_agent_tool_loop(emulator: EmulatorServer) -> None:
    from strands import Agent, tool
    from strands.models.bedrock import BedrockModel

    weather = tool(get_weather)
    session = boto3.session.Session(region_name="us-east-1", **CREDENTIALS)
    model = BedrockModel(
        model_id=NOVA,
        boto_session=session,
        endpoint_url=emulator.url,
        boto_client_config=NO_RETRIES,
    )
    agent = Agent(model=model, tools=[weather], callback_handler=None)
    result = agent("Weather for Tokyo?")
    assert "22" in str(result)
    assert result.stop_reason == "end_turn"


def test_pydantic_ai_bedrock_tool_loop(emulator: EmulatorServer) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.bedrock import BedrockConverseModel
    from pydantic_ai.providers.bedrock import BedrockProvider

    model = BedrockConverseModel(
        NOVA, provider=BedrockProvider(bedrock_client=boto_client(emulator))
    )
    agent = Agent(model, tools=[get_weather])
    result = agent.run_sync("Weather for Tokyo?")
    assert "22" in result.output
    calls = [p for m in result.all_messages() for p in m.parts if p.part_kind == "tool-call"]
    assert [c.tool_name for c in calls] == ["get_weather"]


def test_pydantic_ai_openai_tool_loop(openai_emulator: EmulatorServer) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=openai_emulator.url + "/v1", api_key="sk-test")
    agent = Agent(OpenAIChatModel("gpt-4o", provider=provider), tools=[get_weather])
    result = agent.run_sync("Weather for Tokyo?")
    assert "22" in result.output


async def _aio_converse_stream(server: EmulatorServer, fault: str | None) -> list[str]:
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=NO_RETRIES,
        **CREDENTIALS,
    ) as client:
        if fault is not None:

            def add_header(request: Any, **_: Any) -> None:
                request.headers["x-callproof-fault"] = fault

            client.meta.events.register("before-sign.bedrock-runtime.*", add_header)
        response = await client.converse_stream(
            modelId=NOVA, messages=[{"role": "user", "content": [{"text": "Hello there"}]}]
        )
        return [next(iter(event)) async for event in response["stream"]]


def test_aiobotocore_converse_stream(emulator: EmulatorServer) -> None:
    events = asyncio.run(_aio_converse_stream(emulator, None))
    assert events[0] == "messageStart"
    assert events[-2:] == ["messageStop", "metadata"]


def test_aiobotocore_reset_before_headers(emulator: EmulatorServer) -> None:
    # a TCP reset before any byte: aiohttp's ClientConnectionError ("Connection reset by
    # peer"), which aiobotocore reports as EndpointConnectionError (httpsession.py)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        asyncio.run(_aio_converse_stream(emulator, "reset_before_headers"))


async def _aio_converse(server: EmulatorServer, fault: str) -> Any:
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=NO_RETRIES,
        **CREDENTIALS,
    ) as client:

        def add_header(request: Any, **_: Any) -> None:
            request.headers["x-callproof-fault"] = fault

        client.meta.events.register("before-sign.bedrock-runtime.*", add_header)
        return await client.converse(
            modelId=NOVA, messages=[{"role": "user", "content": [{"text": "Hello there"}]}]
        )


def test_aiobotocore_cut_converse_is_connection_closed(emulator: EmulatorServer) -> None:
    # issue 9 G6: half the declared body, then the connection closes: aiohttp's
    # ClientPayloadError, which aiobotocore maps to ConnectionClosedError
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        asyncio.run(_aio_converse(emulator, "truncate_frame"))


def test_aiobotocore_corrupt_crc_is_a_checksum_error(emulator: EmulatorServer) -> None:
    # botocore's eventstream parser raises ChecksumMismatch on a bad message CRC
    from botocore.eventstream import ChecksumMismatch

    with pytest.raises(ChecksumMismatch):
        asyncio.run(_aio_converse_stream(emulator, "corrupt_crc"))
