"""Fault names, fault plans and the seeded draw."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from callproof.conversation import Conversation, UserMessage
from callproof.emulator.faults import (
    FAULT_NAMES,
    Fault,
    FaultPlan,
    InvalidFault,
    apply_to_turn,
    turn_type,
)
from callproof.emulator.models import ModelProfile, script_turn
from callproof.emulator.state import EmulatorState
from callproof.errors import ConfigError
from callproof.outcomes import TOOL_MARKUP
from callproof.scenarios import tool_call, tool_result

KIMI = "moonshotai.kimi-k2.5"

VALID = [
    "hang_before_headers",
    "hang_no_events",
    "stall_after:3",
    "close_without_stop",
    "truncate_frame",
    "corrupt_crc",
    "stream_exception:modelStreamErrorException",
    "http_error:429",
    "empty_response",
    "stop_reason:end_turn",
    "malformed_tool_args",
    "tool_call_in_text",
    "latency:0.5",
    "reset_mid_body",
    "reset_before_headers",
    "slow_body:2000",
    "reject_reasoning_replay",
]


def test_the_seventeen_names_are_exactly_the_contract() -> None:
    # issue 9 "New faults": reset_mid_body, reset_before_headers, slow_body:BYTES_PER_S,
    # reject_reasoning_replay join the thirteen
    assert len(FAULT_NAMES) == 17
    assert [v.split(":")[0] for v in VALID] == [n.split(":")[0] for n in FAULT_NAMES]


@pytest.mark.parametrize("text", VALID)
def test_valid_faults_parse_and_print_back(text: str) -> None:
    fault = Fault.parse(text)
    assert str(fault) == text


def test_typed_arguments() -> None:
    assert Fault.parse("stall_after:3").count == 3
    assert Fault.parse("http_error:503").status == 503
    assert Fault.parse("latency:0.25").seconds == 0.25
    assert Fault.parse("latency:0.25").added_latency == 0.25
    assert Fault.parse("stall_after:3").added_latency == 0.0
    assert Fault.parse("stop_reason:weird").value == "weird"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("hang", "unknown fault 'hang'"),
        ("stall_after", "needs an argument"),
        ("stall_after:x", "whole number"),
        ("http_error:200", "400 to 599"),
        ("latency:-1", "0 to 3600"),
        ("latency:nan", "0 to 3600"),
        ("stream_exception:bad type", "exception type"),
        ("corrupt_crc:1", "takes no argument"),
    ],
)
def test_bad_faults_are_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(InvalidFault, match=needle) as info:
        Fault.parse(text)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConfigError)


def test_turn_type() -> None:
    assert turn_type(tool_call().conversation) == "first"
    assert turn_type(tool_result().conversation) == "after_tool_result"


PLAN = """
seed = 11
[[rules]]
model = "moonshotai.*"
api = "bedrock"
turn = "after_tool_result"
faults = [
  { fault = "hang_no_events", probability = 0.3 },
  { fault = "http_error:429", probability = 0.2 },
]

[[rules]]
model = "*"
fault = "latency:1"
probability = 0.1
"""


def test_plan_parses_rules_and_matches_globs() -> None:
    plan = FaultPlan.from_toml(PLAN)
    assert plan.seed == 11
    entries = plan.entries_for("bedrock", KIMI, "after_tool_result")
    assert [str(e.fault) for e in entries] == ["hang_no_events", "http_error:429", "latency:1"]
    assert [str(e.fault) for e in plan.entries_for("bedrock", KIMI, "first")] == ["latency:1"]
    assert [str(e.fault) for e in plan.entries_for("openai", KIMI, "after_tool_result")] == [
        "latency:1"
    ]


def test_draw_frequencies_follow_the_probabilities() -> None:
    plan = FaultPlan.from_toml(PLAN)
    rng = FaultPlan.rng_for(5, "bedrock", KIMI, "after_tool_result")
    draws = [plan.draw("bedrock", KIMI, "after_tool_result", rng) for _ in range(2000)]
    counts = {
        name: sum(1 for d in draws if d is not None and d.name == name)
        for name in ("hang_no_events", "http_error", "latency")
    }
    for name, p in (("hang_no_events", 0.3), ("http_error", 0.2), ("latency", 0.1)):
        sd = math.sqrt(2000 * p * (1 - p))
        assert abs(counts[name] - 2000 * p) < 4 * sd, (name, counts)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[rules]]\nfault = 'hang'", "rules[0].faults[0]: unknown fault 'hang'"),
        (
            "[[rules]]\nfaults = [{fault='hang_no_events', probability=1.5}]",
            "probability must be a number from 0 to 1",
        ),
        (
            "[[rules]]\nfaults = [{fault='hang_no_events', probability=0.6},"
            " {fault='corrupt_crc', probability=0.6}]",
            "sum to more than 1",
        ),
        (
            "[[rules]]\nturn = 'second'\nfault = 'corrupt_crc'",
            "turn must be first, after_tool_result or any",
        ),
        ("[[rules]]\napi = 'vertex'\nfault = 'corrupt_crc'", "api must be bedrock, openai or any"),
        ("[[rules]]\nfault = 'corrupt_crc'\ncolour = 'red'", "unknown key(s) colour"),
        ("rules = 3", "rules must be an array"),
        ("colour = 1", "unknown key(s) colour"),
        ("seed = 'x'", "seed must be an integer"),
        ("this is not toml", "not valid TOML"),
        ("[[rules]]\nfaults = []", "non-empty array"),
    ],
)
def test_bad_plans_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        FaultPlan.from_toml(text, source="plan.toml")
    assert needle in str(info.value)
    assert str(info.value).startswith("plan.toml")


def test_plan_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read fault plan"):
        FaultPlan.load(tmp_path / "missing.toml")
    bad_model = tmp_path / "m.toml"
    bad_model.write_text("[[models]]\nid = 'x'\nflavour = 'vertex'\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.flavour"):
        EmulatorState(faults=bad_model)


def test_plan_models_add_profiles_and_a_wildcard_default(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        "[[models]]\nid = 'my.model'\nthinking = true\nquirks = ['kimi_tool_ids']\n"
        "[[models]]\nid = '*'\nflavour = 'openai'\nfirst_event_s = 0\n"
    )
    state = EmulatorState(preset="seed", faults=plan, seed=1)
    mine = state.profile("bedrock", "my.model")
    assert mine is not None
    assert mine.thinking
    assert mine.kimi_tool_ids
    fallback = state.profile("openai", "anything/else")
    assert fallback is not None
    assert fallback.id == "anything/else"
    assert fallback.latency.first_event_s == 0
    assert state.profile("bedrock", "anything.else") is None  # the wildcard is OpenAI-only
    assert state.profile("bedrock", KIMI) is not None  # the preset's models stay
    # a plan replaces the preset's rules: no Kimi hang any more
    assert all(
        state.choose_fault("bedrock", KIMI, tool_result().conversation) is None for _ in range(50)
    )


# -- the seed preset -------------------------------------------------------------------------


def _hangs(seed: int, conversation: Conversation, model: str = KIMI, n: int = 200) -> int:
    state = EmulatorState(preset="seed", seed=seed)
    draws = [state.choose_fault("bedrock", model, conversation) for _ in range(n)]
    assert all(d is None or d.name == "hang_no_events" for d in draws)
    return sum(d is not None for d in draws)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_seed_preset_hangs_kimi_on_40_percent_after_tool_results(seed: int) -> None:
    hangs = _hangs(seed, tool_result().conversation)
    # binomial(200, 0.4): mean 80, sd 6.9; 99.9% two-sided interval is about 80 +- 23
    assert 57 <= hangs <= 103


def test_seed_preset_never_hangs_a_first_turn_or_other_models() -> None:
    assert _hangs(1, tool_call().conversation) == 0
    assert _hangs(1, tool_result().conversation, model="amazon.nova-pro-v1:0") == 0
    assert _hangs(1, tool_result().conversation, model="mistral.mistral-large-3-675b-instruct") == 0
    state = EmulatorState(preset="seed", seed=1)
    assert all(
        state.choose_fault("openai", "moonshotai/kimi-k2.5", tool_result().conversation) is None
        for _ in range(100)
    )


def test_same_seed_same_fault_sequence_and_interleaving_does_not_matter() -> None:
    conversation = tool_result().conversation
    a = EmulatorState(preset="seed", seed=42)
    b = EmulatorState(preset="seed", seed=42)
    c = EmulatorState(preset="seed", seed=43)
    seq_a = [a.choose_fault("bedrock", KIMI, conversation) for _ in range(40)]
    seq_b = []
    for _ in range(40):
        b.choose_fault("bedrock", "amazon.nova-pro-v1:0", conversation)  # other traffic in between
        seq_b.append(b.choose_fault("bedrock", KIMI, conversation))
    seq_c = [c.choose_fault("bedrock", KIMI, conversation) for _ in range(40)]
    assert seq_a == seq_b
    assert seq_a != seq_c


def test_forced_fault_overrides_the_plan() -> None:
    state = EmulatorState(preset="seed", seed=1)
    fault = state.choose_fault(
        "bedrock", "amazon.nova-pro-v1:0", tool_call().conversation, "corrupt_crc"
    )
    assert fault == Fault("corrupt_crc")
    with pytest.raises(InvalidFault):
        state.choose_fault("bedrock", KIMI, tool_call().conversation, "nope")


# -- content faults --------------------------------------------------------------------------


def test_content_faults_bend_the_turn() -> None:
    import random

    profile = ModelProfile("m")
    conversation = tool_call().conversation
    turn = script_turn(profile, conversation, random.Random(0))
    assert apply_to_turn(None, turn, conversation) == turn
    assert apply_to_turn(Fault.parse("corrupt_crc"), turn, conversation) == turn
    empty = apply_to_turn(Fault.parse("empty_response"), turn, conversation)
    assert (empty.text, empty.reasoning, empty.tool_calls, empty.stop_reason) == (
        "",
        "",
        (),
        "end_turn",
    )
    assert apply_to_turn(Fault.parse("stop_reason:odd"), turn, conversation).stop_reason == "odd"
    broken = apply_to_turn(Fault.parse("malformed_tool_args"), turn, conversation)
    assert broken.tool_calls
    assert broken.tool_calls[0].arguments == '{"city": "Tokyo"'
    in_text = apply_to_turn(Fault.parse("tool_call_in_text"), turn, conversation)
    assert in_text.tool_calls == ()
    assert in_text.stop_reason == "end_turn"
    assert TOOL_MARKUP.search(in_text.text)
    # after a tool result there is no call: one is made up so the fault still shows
    answer_conv = tool_result().conversation
    answer = script_turn(profile, answer_conv, random.Random(0))
    assert apply_to_turn(Fault.parse("malformed_tool_args"), answer, answer_conv).tool_calls
    # no call and no tool to make one up from: the turn is left as it was
    assert (
        apply_to_turn(
            Fault.parse("malformed_tool_args"),
            answer,
            Conversation(messages=(UserMessage.text("hi"),)),
        )
        == answer
    )


def test_faults_is_another_name_for_rules() -> None:
    plan = FaultPlan.from_toml(
        '[[faults]]\nmodel = "amazon.*"\nturn = "first"\nfault = "http_error:500"\n'
    )
    assert [str(e.fault) for e in plan.entries_for("bedrock", "amazon.nova-pro-v1:0", "first")] == [
        "http_error:500"
    ]
    with pytest.raises(ConfigError, match="not both"):
        FaultPlan.from_toml('[[faults]]\nfault = "corrupt_crc"\n[[rules]]\nfault = "corrupt_crc"\n')


def test_the_documented_example_plan_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "faults.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(example)
    plan = FaultPlan.load(plan_file)
    assert plan.seed == 7
    entries = plan.entries_for("bedrock", KIMI, "after_tool_result")
    assert [(str(e.fault), e.probability) for e in entries] == [
        ("hang_no_events", 0.4),
        ("http_error:429", 0.05),
    ]
    state = EmulatorState(faults=plan_file)
    assert state.profile("bedrock", "some.unknown-model") is not None  # the "*" default profile
