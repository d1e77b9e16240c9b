"""Real openai SDK clients for the emulator tests, one per (server, timeout), closed together."""

from __future__ import annotations

from typing import Any

import openai


class OpenAIClients:
    """A cache of real ``openai.OpenAI`` clients (typed Any: the tests send hand-written dicts)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, float], Any] = {}

    def get(self, url: str, timeout: float = 3.0) -> Any:
        key = (url, timeout)
        if key not in self._clients:
            self._clients[key] = openai.OpenAI(
                base_url=url + "/v1", api_key="test-key", max_retries=0, timeout=timeout
            )
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
