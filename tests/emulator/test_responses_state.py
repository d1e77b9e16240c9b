"""Responses API state (issue 9 G2) with the real openai SDK: ``previous_response_id`` and
``item_reference`` resolve against stored responses; unknown ids get OpenAI's own errors.

Sources: the OpenAI API reference (Responses: ``previous_response_id``, ``store``, input item
type ``item_reference``); the errors as api.openai.com sends them, quoted in
can1357/oh-my-pi#41 (404 "Item with id ... not found. Items are not persisted when `store` is
set to false. ...") and maximhq/bifrost#2441 (400 ``previous_response_not_found``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from callproof.emulator.faults import FaultPlan
from callproof.emulator.responses_store import ResponseStore
from callproof.emulator.server import EmulatorServer
from callproof.emulator.state import Limits

MODEL = "o-reasoner"
PLAN = FaultPlan.from_mapping(
    {
        "models": [
            {
                "id": MODEL,
                "flavour": "openai",
                "thinking": True,
                "first_event_s": 0,
                "tokens_per_s": 0,
                "jitter": 0,
            }
        ]
    }
)
TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with EmulatorServer(preset="fast", faults=PLAN, seed=4) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)
        yield sdk
        sdk.close()


def test_previous_response_id_continues_a_tool_loop(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="Weather for Tokyo?", tools=[TOOL])
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 22}'}],
        tools=[TOOL],
    )
    # the call_id is only known from the stored response: without resolution this is a 400
    assert "22" in second.output_text
    assert second.previous_response_id == first.id


def test_item_references_resolve(client: openai.OpenAI) -> None:
    # step 2 as the Vercel AI SDK sends it with a reasoning model: reasoning and call by id
    first = client.responses.create(model=MODEL, input="Weather for Tokyo?", tools=[TOOL])
    reasoning = next(item for item in first.output if item.type == "reasoning")
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Weather for Tokyo?"},
            {"type": "item_reference", "id": reasoning.id},
            {"type": "item_reference", "id": call.id},
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 22}'},
        ],
        tools=[TOOL],
    )
    assert "22" in second.output_text


def test_unknown_previous_response_id_is_openais_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="Hi", previous_response_id="resp_nope")
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["message"] == "Previous response with id 'resp_nope' not found."
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id"


def test_unknown_item_reference_is_openais_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(
            model=MODEL,
            input=[
                {"role": "user", "content": "Hi"},
                {"type": "item_reference", "id": "rs_missing"},
            ],
        )
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["message"].startswith("Item with id 'rs_missing' not found.")
    assert "Items are not persisted when `store` is set to false." in error["message"]


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="Hello", store=False)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input="Again", previous_response_id=first.id)


def test_streamed_responses_are_stored(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="Hello") as stream:
        final = stream.get_final_response()
    follow = client.responses.create(model=MODEL, input="Again", previous_response_id=final.id)
    assert follow.status == "completed"


def test_the_store_is_bounded() -> None:
    store = ResponseStore(max_responses=2)
    for n in range(3):
        store.put(f"resp_{n}", [], [{"id": f"msg_{n}", "type": "message"}])
    assert len(store) == 2
    assert store.response("resp_0") is None
    assert store.item("msg_0") is None
    assert store.item("msg_2") is not None
    assert Limits().max_stored_responses == 1024
