"""Fixtures of the probe-runner tests: small configurations on the fast emulator preset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FAST_TOML = """\
[defaults]
n = {n}
concurrency = 32
timeouts = {{ connect = 2.0, first_event = {first_event}, idle = 0.5, deadline = 5.0 }}

[emulator]
preset = "fast"
seed = 7
{faults_line}

[providers.bedrock]
api = "bedrock-converse-stream"

[providers.openrouter]
api = "openai-completions"

[targets.nova]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"

[targets.mistral]
provider = "bedrock"
model = "mistral.mistral-large-3-675b-instruct"

[targets.or-kimi]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[routes.pair]
targets = ["nova", "mistral"]
{extra}
"""

MakeConfig = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """Write ``callproof.toml`` (three targets and a route on the fast preset) and, when given,
    a fault plan beside it; returns the config path."""

    def make(
        *, faults: str | None = None, n: int = 3, first_event: float = 1.0, extra: str = ""
    ) -> Path:
        faults_line = ""
        if faults is not None:
            (tmp_path / "faults.toml").write_text(faults)
            faults_line = 'faults = "faults.toml"'
        path = tmp_path / "callproof.toml"
        path.write_text(
            FAST_TOML.format(n=n, first_event=first_event, faults_line=faults_line, extra=extra)
        )
        return path

    return make
