"""What the Responses API remembers: stored responses and their items, bounded, per emulator.

``previous_response_id`` continues a stored response (its input and output come first), and an
``{"type": "item_reference", "id": ...}`` input item stands for a stored item (the Vercel AI
SDK's OpenAI Responses provider sends its reasoning and calls this way on step 2 of a tool loop
with a reasoning model). Unknown ids get OpenAI's own errors (status, message, param and code as
api.openai.com sends them; the item error is quoted from the API in can1357/oh-my-pi#41 and
vercel/ai#7543, the response error in maximhq/bifrost#2441):

* ``previous_response_id``: 400 ``Previous response with id 'resp_x' not found.``,
  ``param: "previous_response_id"``, ``code: "previous_response_not_found"``;
* ``item_reference``: 404 ``Item with id 'rs_x' not found. Items are not persisted when `store`
  is set to false. Try again with `store` set to true, or remove this item from your input.``,
  ``param: "input"``.

A response is kept only when the request says ``store`` (the default, as on OpenAI). The store
holds ``max_responses`` responses (least recently stored dropped first) and their items, so a
long-running emulator's memory stays bounded. Thread-safe; sans-IO.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from callproof.emulator.openai_decode import OpenAIRequestError

__all__ = ["ResponseStore", "StoredResponse", "resolve_input"]

_ITEM_MISSING = (
    "Item with id '{id}' not found. Items are not persisted when `store` is set to false. Try "
    "again with `store` set to true, or remove this item from your input."
)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One stored response: the input items it answered (resolved) and its output items."""

    id: str
    input: tuple[dict[str, Any], ...]
    output: tuple[dict[str, Any], ...]


class ResponseStore:
    """Bounded memory of stored responses and their items; see the module docstring."""

    def __init__(self, max_responses: int = 1024) -> None:
        self.max_responses = max_responses
        self._responses: OrderedDict[str, StoredResponse] = OrderedDict()
        self._items: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._responses)

    def put(
        self, response_id: str, inputs: list[dict[str, Any]], output: list[dict[str, Any]]
    ) -> None:
        """Remember a response (its id, resolved input and output items)."""
        stored = StoredResponse(response_id, tuple(inputs), tuple(output))
        with self._lock:
            self._responses[response_id] = stored
            for item in (*inputs, *output):
                item_id = item.get("id")
                if isinstance(item_id, str) and item_id:
                    self._items[item_id] = (response_id, item)
            while len(self._responses) > self.max_responses:
                _, dropped = self._responses.popitem(last=False)
                for item in (*dropped.input, *dropped.output):
                    owner = self._items.get(str(item.get("id")))
                    if owner is not None and owner[0] == dropped.id:
                        del self._items[str(item.get("id"))]

    def response(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            return self._responses.get(response_id)

    def item(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(item_id)
        return None if found is None else found[1]


def _as_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return list(value)
    return []  # not a list: the decoder reports it with OpenAI's message


def resolve_input(data: dict[str, Any], store: ResponseStore | None) -> list[Any] | Any:
    """The request's ``input`` with ``previous_response_id`` prepended and every
    ``item_reference`` replaced by its stored item; raises :class:`OpenAIRequestError` (the
    real 400/404) for ids the store does not hold. Without a store, ``input`` unchanged."""
    raw = data.get("input")
    previous = data.get("previous_response_id")
    if store is None:
        return raw
    if previous is not None:
        if not isinstance(previous, str):
            raise OpenAIRequestError(
                f"Invalid type for 'previous_response_id': expected a string, but got "
                f"{type(previous).__name__} instead.",
                param="previous_response_id",
                code="invalid_type",
            )
        stored = store.response(previous)
        if stored is None:
            raise OpenAIRequestError(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
    has_reference = isinstance(raw, list) and any(
        isinstance(i, dict) and i.get("type") == "item_reference" for i in raw
    )
    if previous is None and not has_reference:
        return raw
    items: list[Any] = []
    if previous is not None and stored is not None:
        items.extend(dict(i) for i in (*stored.input, *stored.output))
    for item in _as_items(raw):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            ref = item.get("id")
            found = store.item(ref) if isinstance(ref, str) else None
            if found is None:
                raise OpenAIRequestError(_ITEM_MISSING.format(id=ref), param="input", status=404)
            items.append(dict(found))
        else:
            items.append(item)
    return items
