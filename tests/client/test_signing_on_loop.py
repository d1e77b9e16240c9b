"""SigV4 on the event loop once the credential chain is resolved: the first call resolves it
in a thread (it may read files or wait on a credential service), later calls sign on the loop
without a thread hop; credentials due for a refresh go back to the thread."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from callproof.client import Client
from callproof.dialects.base import WireRequest
from callproof.endpoints import Signer, build_request
from callproof.scenarios import tool_result
from callproof.targets import Auth, Endpoint, Target

FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WIRE = WireRequest("POST", "/model/m/converse-stream", b"{}")
ENDPOINT = Endpoint(
    base_url="https://bedrock-runtime.us-east-1.amazonaws.com", auth=Auth(kind="sigv4")
)


@pytest.fixture
def static_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)


@pytest.mark.usefixtures("static_keys")
def test_ready_only_after_a_signing_resolved_the_chain() -> None:
    signer = Signer()
    assert not signer.ready(None)
    build_request(WIRE, ENDPOINT, signer=signer)
    assert signer.ready(None)
    assert not signer.ready("another-profile")


@pytest.mark.usefixtures("static_keys")
def test_credentials_due_for_refresh_are_not_ready() -> None:
    signer = Signer()
    build_request(WIRE, ENDPOINT, signer=signer)

    class Expiring:
        def refresh_needed(self) -> bool:
            return True

    signer._resolved[None] = Expiring()
    assert not signer.ready(None)


@pytest.mark.usefixtures("static_keys")
async def test_the_client_hops_to_a_thread_only_for_the_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops: list[Any] = []
    real = asyncio.to_thread

    async def counting(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(403, json={"message": "denied"})

    target = Target("b", "bedrock-converse-stream", "amazon.nova-pro-v1:0", ENDPOINT)
    conv = tool_result().conversation
    async with Client(transport=httpx.MockTransport(handler)) as client:
        for _ in range(3):
            with pytest.raises(Exception, match="denied"):
                await client.complete(target, conv)
    assert len(seen) == 3
    assert all(a.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") for a in seen)
    assert len(hops) == 1  # the first call resolved the chain; the others signed on the loop
