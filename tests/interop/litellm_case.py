"""LiteLLM cases against the emulator, run by tests/interop/test_litellm.py with the
interpreter of .venv-bench (LiteLLM is pinned in the bench group, kept out of the project's
environment). One process for every case, since importing LiteLLM takes seconds. Prints one
JSON line per case.

    .venv-bench/bin/python tests/interop/litellm_case.py '[{"url": URL, "case": "bedrock-tool"}]'
"""

from __future__ import annotations

import json
import sys
from typing import Any

import litellm

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
BEDROCK = {
    "aws_bedrock_runtime_endpoint": "",
    "aws_access_key_id": "AKIDEXAMPLE",
    "aws_secret_access_key": "test-secret",
    "aws_region_name": "us-east-1",
}


def main() -> None:
    for spec in json.loads(sys.argv[1]):
        run(spec["url"], spec)


def run(url: str, spec: dict[str, Any]) -> None:
    out: dict[str, Any] = {
        "text": "",
        "tool_calls": [],
        "finish": None,
        "usage": None,
        "error": None,
    }
    messages = [{"role": "user", "content": "Weather for Tokyo?"}]
    headers = {"x-callproof-fault": spec["fault"]} if spec.get("fault") else None
    try:
        if spec["case"] == "bedrock-tool":
            response = litellm.completion(
                model="bedrock/converse/amazon.nova-pro-v1:0",
                messages=messages,
                tools=[TOOL],
                num_retries=0,
                extra_headers=headers,
                **{**BEDROCK, "aws_bedrock_runtime_endpoint": url},
            )
            message = response.choices[0].message
            out["tool_calls"] = [
                {"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                for c in message.tool_calls or []
            ]
            out["finish"] = response.choices[0].finish_reason
        elif spec["case"] == "bedrock-stream":
            chunks = litellm.completion(
                model="bedrock/converse/amazon.nova-pro-v1:0",
                messages=[{"role": "user", "content": "Hello there"}],
                stream=True,
                num_retries=0,
                extra_headers=headers,
                **{**BEDROCK, "aws_bedrock_runtime_endpoint": url},
            )
            for chunk in chunks:
                delta = chunk.choices[0].delta
                out["text"] += delta.content or ""
                out["finish"] = chunk.choices[0].finish_reason or out["finish"]
        else:
            chunks = litellm.completion(
                model="openai/gpt-4o",
                api_base=url + "/v1",
                api_key="sk-test",
                messages=[{"role": "user", "content": "Hello there"}],
                stream=True,
                stream_options={"include_usage": True},
                num_retries=0,
            )
            for chunk in chunks:
                if chunk.choices:
                    out["text"] += chunk.choices[0].delta.content or ""
                    out["finish"] = chunk.choices[0].finish_reason or out["finish"]
                usage = getattr(chunk, "usage", None)
                if usage:
                    out["usage"] = {"completion_tokens": usage.completion_tokens}
    except Exception as exc:  # the outcome is the test's to judge
        out["error"] = {"type": type(exc).__name__, "message": str(exc)[:500]}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
