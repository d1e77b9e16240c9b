"""callproof.toml: loading, the embedded default, the agent-config JSON, errors with key + line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from callproof.cli.init import EXAMPLE_TOML
from callproof.errors import ConfigError
from callproof.probe.config import (
    DEFAULT_TOML,
    EMULATOR_URL,
    load_config,
    parse_agent_json,
    parse_config,
)

SEED_TARGETS = [
    "bedrock-kimi-k2.5",
    "bedrock-mistral-large-3",
    "bedrock-nova-pro",
    "openrouter-kimi-k2.5",
]


def test_embedded_default_is_the_seeds_matrix_on_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert list(config.targets) == SEED_TARGETS
    assert config.routes["kimi"].targets == ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
    assert config.path is None
    assert config.needs_emulator
    assert config.defaults.n == 10
    assert config.defaults.scenarios == ["tool-result"]
    kimi = config.targets["bedrock-kimi-k2.5"]
    assert (kimi.api, kimi.model) == ("bedrock-converse-stream", "moonshotai.kimi-k2.5")
    assert config.targets["openrouter-kimi-k2.5"].api == "openai-completions"
    # clocks that suit the emulator: the default run takes seconds
    assert kimi.timeouts.first_event == 1.5
    assert kimi.timeouts.idle == 1.0
    assert kimi.timeouts.deadline == 10.0


def test_bind_emulator_puts_openai_apis_under_v1() -> None:
    config = parse_config(DEFAULT_TOML).bind_emulator("http://127.0.0.1:4010/")
    assert config.targets["bedrock-nova-pro"].endpoint.base_url == "http://127.0.0.1:4010"
    assert config.targets["openrouter-kimi-k2.5"].endpoint.base_url == "http://127.0.0.1:4010/v1"
    assert not config.needs_emulator


def test_working_directory_file_wins_over_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "callproof.toml").write_text(
        '[providers.p]\napi = "openai-completions"\nendpoint = "https://example.invalid/v1"\n'
        'auth = { kind = "bearer", env = "MY_KEY" }\nheaders = { "X-Title" = "callproof" }\n'
        '[targets.t]\nprovider = "p"\nmodel = "m"\n'
        'extra = { provider = { only = ["moonshotai"], allow_fallbacks = false } }\n'
        "timeouts = { first_event = 5 }\n[defaults]\nn = 3\ntimeouts = { idle = 2 }\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.path == tmp_path / "callproof.toml"
    t = config.targets["t"]
    assert t.endpoint.base_url == "https://example.invalid/v1"
    assert t.endpoint.auth.kind == "bearer"
    assert t.endpoint.auth.env == "MY_KEY"
    assert t.endpoint.headers == {"X-Title": "callproof"}
    assert t.extra == {"provider": {"only": ["moonshotai"], "allow_fallbacks": False}}
    assert (t.timeouts.first_event, t.timeouts.idle) == (5, 2)
    assert config.defaults.n == 3
    assert not config.needs_emulator


def test_init_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "callproof.toml"
    path.write_text(EXAMPLE_TOML)
    config = load_config(path)
    assert list(config.targets) == SEED_TARGETS
    assert "weather-after-result" in config.scenarios
    scenario = config.scenarios["weather-after-result"]
    assert scenario.expectation.text_regex == r"\b22\b"
    assert scenario.expectation.stop_reasons == ("end_turn",)
    assert config.targets["bedrock-nova-pro"].timeouts.first_event == 2.0


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, name="callproof.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (
            '[providers.p]\napi = "openai-completions"\n\n[targets.x]\nprovider = "p"\n'
            'model = "m"\ntimeouts = { first_event = "soon" }\n',
            7,
            "targets.x.timeouts.first_event",
            "number",
        ),
        (
            '[defaults]\nn = 10\n\n[providers.p]\napi = "bogus"\n',
            5,
            "providers.p.api",
            "openai-completions",
        ),
        (
            '[providers.p]\napi = "openai-completions"\nfrobnicate = 1\n',
            3,
            "providers.p.frobnicate",
            "unknown key",
        ),
        (
            '[providers.p]\napi = "openai-completions"\n[targets.x]\nprovider = "q"\nmodel = "m"\n',
            4,
            "targets.x.provider",
            "unknown provider",
        ),
        (
            '[providers.p]\napi = "openai-completions"\n[targets.x]\nprovider = "p"\n',
            3,
            "targets.x.model",
            "missing",
        ),
        ("[defaults]\nn = 0\n", 2, "defaults.n", "greater than"),
        (
            '[providers.p]\napi = "openai-completions"\n[targets.x]\nprovider = "p"\nmodel = "m"\n'
            '[routes.r]\ntargets = ["x", "y"]\n',
            7,
            "routes.r.targets[1]",
            "unknown target",
        ),
        (
            '[defaults]\nscenarios = ["tool-result", "nope"]\n',
            2,
            "defaults.scenarios[1]",
            "unknown scenario",
        ),
        (
            '[scenarios.s]\n[[scenarios.s.messages]]\nrole = "user"\ncontent = "hi"\n'
            '[[scenarios.s.messages]]\nrole = "robot"\n',
            6,
            "scenarios.s.messages[1].role",
            "user",
        ),
        (
            '[scenarios.s]\nmessages = [{ role = "user", content = "x" }]\n[scenarios.s.expect]\n'
            'text_regex = "(unclosed"\n',
            4,
            "scenarios.s.expect.text_regex",
            "invalid regex",
        ),
        (
            '[providers.p]\napi = "openai-completions"\nendpoint = "ftp://x"\n[targets.x]\n'
            'provider = "p"\nmodel = "m"\n',
            3,
            "providers.p.endpoint",
            "http",
        ),
        ("[defaults]\nn = 5\nx = [\n", 3, "", "invalid TOML"),
    ],
)
def test_errors_name_the_key_and_the_line(text: str, line: int, key: str, words: str) -> None:
    message = _error(text)
    assert message.startswith(f"callproof.toml:{line}"), message
    assert key in message
    assert words in message


def test_route_policy_errors_point_at_the_route() -> None:
    message = _error(
        '[providers.p]\napi = "openai-completions"\n[targets.x]\nprovider = "p"\nmodel = "m"\n'
        '[routes.r]\ntargets = ["x"]\nretry = { max_attempts = 0 }\n'
    )
    assert message.startswith("callproof.toml:8"), message
    assert "routes.r.retry.max_attempts" in message


def test_route_policy_typo_names_the_whole_key_path_once() -> None:
    message = _error(
        '[providers.p]\napi = "openai-completions"\n[targets.x]\nprovider = "p"\nmodel = "m"\n'
        '[routes.kimi]\ntargets = ["x"]\nhedge = { mode = "quantile", dleay_s = 2 }\n'
    )
    assert message.startswith("callproof.toml:8: routes.kimi.hedge.dleay_s: unknown key"), message
    assert message.count("dleay_s") == 2  # the key path, then the list of unknown keys


def test_user_scenario_cannot_shadow_a_builtin() -> None:
    message = _error('[scenarios.tool-result]\nmessages = [{ role = "user", content = "x" }]\n')
    assert "built-in" in message
    assert message.startswith("callproof.toml:1")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_fail_under_accepts_percent() -> None:
    assert parse_config("[defaults]\nfail_under = 90\n").defaults.fail_under == pytest.approx(0.9)
    assert parse_config("[defaults]\nfail_under = 0.8\n").defaults.fail_under == pytest.approx(0.8)


def test_fault_plan_path_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "faults.toml").write_text("")
    (tmp_path / "callproof.toml").write_text('[emulator]\nfaults = "faults.toml"\nseed = 3\n')
    config = load_config(tmp_path / "callproof.toml")
    assert config.emulator.faults == tmp_path / "faults.toml"
    assert config.emulator.seed == 3
    (tmp_path / "callproof.toml").write_text('[emulator]\nfaults = "gone.toml"\n')
    with pytest.raises(ConfigError, match=r"callproof.toml:2: emulator.faults"):
        load_config(tmp_path / "callproof.toml")


SEED_JSON = {
    "models": {
        "providers": {
            "openrouter": {
                "baseUrl": "https://openrouter.ai/api/v1",
                "api": "openai-responses",
                "models": [{"id": "moonshotai/kimi-k2.5", "name": "Kimi K2.5"}],
            },
            "bedrock": {
                "baseUrl": "https://bedrock-runtime.us-west-2.amazonaws.com",
                "api": "bedrock-converse-stream",
                "models": [
                    {"id": "moonshotai.kimi-k2.5", "name": "Kimi K2.5"},
                    {"id": "amazon.nova-pro-v1:0"},
                ],
            },
        }
    }
}


def test_agent_config_json_of_the_seeds(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(SEED_JSON, indent=2))
    config = load_config(path)
    assert set(config.targets) == {
        "openrouter-kimi-k2.5",
        "bedrock-kimi-k2.5",
        "bedrock-nova-pro-v1-0",
    }
    orr = config.targets["openrouter-kimi-k2.5"]
    assert orr.api == "openai-responses"
    assert orr.endpoint.base_url == "https://openrouter.ai/api/v1"
    assert orr.endpoint.auth.kind == "bearer"
    assert orr.endpoint.auth.env == "OPENROUTER_API_KEY"
    br = config.targets["bedrock-kimi-k2.5"]
    assert br.endpoint.region == "us-west-2"
    assert br.endpoint.auth.kind == "sigv4"
    assert br.provider == "bedrock"


def test_agent_config_json_errors_name_key_and_line(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(SEED_JSON))
    bad["models"]["providers"]["bedrock"]["api"] = "grpc"
    text = json.dumps(bad, indent=2)
    expected_line = next(i for i, line in enumerate(text.splitlines(), 1) if '"grpc"' in line)
    with pytest.raises(ConfigError) as info:
        parse_agent_json(text, name="agent.json")
    assert str(info.value).startswith(f"agent.json:{expected_line}: models.providers.bedrock.api")
    with pytest.raises(ConfigError, match=r"agent.json:2: invalid JSON"):
        parse_agent_json('{\n  "models": ,\n}', name="agent.json")


def test_emulator_endpoint_is_the_default() -> None:
    config = parse_config(
        '[providers.p]\napi = "bedrock-converse"\n[targets.t]\nprovider = "p"\nmodel = "m"\n'
    )
    assert config.targets["t"].endpoint.base_url == EMULATOR_URL
    assert config.targets["t"].endpoint.region == "us-east-1"
    assert re.fullmatch(r"emulator:?", EMULATOR_URL)


_DIALECT_TOML = (
    '[providers.p]\napi = "openai-completions"\nendpoint = "http://127.0.0.1:9/v1"\n'
    '[targets.o1]\nprovider = "p"\nmodel = "o1"\n'
    'dialect = { max_tokens_field = "max_completion_tokens" }\n'
)


def test_dialect_options_reach_the_wire() -> None:
    from callproof.client import Client
    from callproof.scenarios import tool_result

    config = parse_config(_DIALECT_TOML, name="callproof.toml")
    target = config.targets["o1"]
    assert target.dialect_options == {"max_tokens_field": "max_completion_tokens"}
    body = json.loads(Client().build(target, tool_result().conversation).content)
    assert body["max_completion_tokens"] == 100
    assert "max_tokens" not in body


def test_unknown_dialect_option_names_the_key_and_line() -> None:
    message = _error(_DIALECT_TOML.replace("max_tokens_field", "max_tokens_feild"))
    assert message.startswith("callproof.toml:7: targets.o1.dialect:"), message
    assert "max_tokens_feild" in message
