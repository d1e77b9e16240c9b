"""One call through the gateway with an unmodified SDK, summarised as a :class:`Result`.

``front="bedrock"``: boto3 ``converse_stream``; ``front="openai"``: the openai SDK's streamed
chat completion. ``mode="buffered"`` adds ``x-callproof-mode: buffered``; ``fault`` adds
``x-callproof-fault`` (forwarded to the gateway's first upstream attempts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import openai
from botocore.exceptions import ClientError, EventStreamError

from tests.gateway.conftest import OPENAI_TOOLS, TOOLS, bedrock_client

__all__ = ["Result", "call"]

QUESTION_TEXT = "Weather for Tokyo?"


@dataclass
class Result:
    """What the client saw."""

    #: "ok" (a complete answer), "in_band" (an error after the stream began) or "error" (an
    #: HTTP error before it).
    kind: str
    text: str = ""
    stop: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    code: str | None = None
    message: str = ""
    usage: dict[str, Any] | None = None
    model: str | None = None
    elapsed_s: float = 0.0
    #: content received before an in-band error
    partial: str = ""


def _bedrock_messages(prefill: bool, after_tool: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": QUESTION_TEXT}]}]
    if after_tool:
        messages += [
            {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "t1",
                            "name": "get_weather",
                            "input": {"city": "Tokyo"},
                        }
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 22}}]}}
                ],
            },
        ]
    if prefill:
        messages.append({"role": "assistant", "content": [{"text": "The answer is"}]})
    return messages


def _openai_messages(prefill: bool, after_tool: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION_TEXT}]
    if after_tool:
        call = {
            "id": "t1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
        }
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "t1", "content": '{"temp": 22}'},
        ]
    if prefill:
        messages.append({"role": "assistant", "content": "The answer is"})
    return messages


def call(
    url: str,
    front: str,
    *,
    model: str,
    mode: str | None = None,
    fault: str | None = None,
    prefill: bool = False,
    after_tool: bool = True,
) -> Result:
    started = time.monotonic()
    if front == "bedrock":
        result = _bedrock(url, model, mode, fault, prefill, after_tool)
    else:
        result = _openai(url, model, mode, fault, prefill, after_tool)
    result.elapsed_s = time.monotonic() - started
    return result


def _bedrock(
    url: str, model: str, mode: str | None, fault: str | None, prefill: bool, after_tool: bool
) -> Result:
    client = bedrock_client(url, fault=fault, mode=mode)
    try:
        response = client.converse_stream(
            modelId=model,
            messages=_bedrock_messages(prefill, after_tool),
            toolConfig={"tools": TOOLS},
        )
    except ClientError as exc:
        meta = exc.response.get("ResponseMetadata", {})
        return Result(
            "error",
            status=meta.get("HTTPStatusCode"),
            code=exc.response["Error"]["Code"],
            message=exc.response["Error"]["Message"],
            headers=meta.get("HTTPHeaders", {}),
        )
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    text, stop, usage, tools = "", None, None, []
    try:
        for event in response["stream"]:
            if "contentBlockDelta" in event:
                text += event["contentBlockDelta"]["delta"].get("text", "")
            elif "contentBlockStart" in event:
                tools.append(event["contentBlockStart"]["start"]["toolUse"])
            elif "messageStop" in event:
                stop = event["messageStop"]["stopReason"]
            elif "metadata" in event:
                usage = event["metadata"]["usage"]
    except EventStreamError as exc:
        return Result(
            "in_band",
            headers=headers,
            code=exc.response["Error"]["Code"],
            message=exc.response["Error"]["Message"],
            partial=text,
        )
    if stop is None:
        return Result(
            "in_band", headers=headers, message="stream ended without messageStop", partial=text
        )
    return Result("ok", text=text, stop=stop, tool_calls=tools, headers=headers, usage=usage)


def _openai(
    url: str, model: str, mode: str | None, fault: str | None, prefill: bool, after_tool: bool
) -> Result:
    headers: dict[str, str] = {}
    if fault:
        headers["x-callproof-fault"] = fault
    if mode:
        headers["x-callproof-mode"] = mode
    client = openai.OpenAI(
        base_url=url + "/v1", api_key="sk-test", max_retries=0, timeout=60, default_headers=headers
    )
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=_openai_messages(prefill, after_tool),  # type: ignore[arg-type]
            tools=OPENAI_TOOLS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    except openai.APIStatusError as exc:
        body: Any = exc.body
        return Result(
            "error",
            status=exc.status_code,
            code=body.get("code") if isinstance(body, dict) else None,
            message=exc.message,
            headers=dict(exc.response.headers),
        )
    got = dict(raw.headers)
    text, finish, usage, model_name, tools = "", None, None, None, []
    try:
        for chunk in raw.parse():
            model_name = chunk.model or model_name
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    if tc.id:
                        tools.append(
                            {"id": tc.id, "name": tc.function.name if tc.function else None}
                        )
    except openai.APIError as exc:
        return Result("in_band", headers=got, message=exc.message, partial=text, model=model_name)
    if finish is None:
        return Result(
            "in_band", headers=got, message="stream ended without finish_reason", partial=text
        )
    return Result(
        "ok", text=text, stop=finish, tool_calls=tools, headers=got, usage=usage, model=model_name
    )
