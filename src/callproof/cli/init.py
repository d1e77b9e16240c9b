"""``callproof init``: write a commented example ``callproof.toml``."""

from __future__ import annotations

from pathlib import Path

import click

from callproof.errors import ConfigError

__all__ = ["EXAMPLE_TOML", "init"]

EXAMPLE_TOML = """\
# callproof.toml: what `callproof run` probes. Reference: docs/configuration.md
#
# As written, every provider points at the embedded emulator ("emulator"), so
# `callproof run` works offline with no credentials. Point a provider at a real endpoint
# (examples at the end) to probe the real thing.

[defaults]
n = 10                          # attempts per target and scenario (-n)
scenarios = ["tool-result"]     # built-ins: tool-result, tool-call, multi-step,
                                #            parallel-tools, thinking-replay
concurrency = 16                # attempts in flight at once (--concurrency)
# per_target_concurrency = 4    # and per target or route
# rate_limit = 5.0              # attempts started per second, over the whole run
# fail_under = 0.9              # CI gate: exit 1 when a pass rate is under 90% (or 90)
# gate = "lower"                # compare the Wilson 95% lower bound instead of the rate
# out = "callproof-runs"        # run directories go under here
# targets = ["bedrock-kimi-k2.5"]   # probe only these by default (all when unset)
# routes = ["kimi"]
# The clocks of every attempt, in seconds (targets may override them). A hang is an outcome:
# it is never retried inside a measured attempt.
timeouts = { connect = 2.0, first_event = 1.5, idle = 1.0, deadline = 10.0 }

[emulator]                      # used by providers whose endpoint is "emulator"
preset = "seed"                 # seed (Kimi on Bedrock hangs 40% after a tool result),
                                # healthy, fast
# faults = "faults.toml"        # a fault plan (docs/faults.md), relative to this file
# seed = 7                      # reproducible fault draws (also --seed)

# Providers: one wire API at one endpoint.
#   api      = bedrock-converse-stream | bedrock-converse | openai-completions | openai-responses
#   endpoint = "emulator" (the default) or a base URL (alias: base_url)
#   auth     = { kind = "sigv4" | "bedrock-api-key" | "bearer" | "none",
#                env = "VAR", profile = "p" }
[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"

[providers.openrouter]
api = "openai-completions"
endpoint = "emulator"

# Targets: a model at a provider. Quote names that contain dots.
[targets."bedrock-kimi-k2.5"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets.bedrock-mistral-large-3]
provider = "bedrock"
model = "mistral.mistral-large-3-675b-instruct"

[targets.bedrock-nova-pro]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"
timeouts = { first_event = 2.0 }   # per-target override of [defaults] timeouts

[targets."openrouter-kimi-k2.5"]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"
# Fields merged into the request body. On real OpenRouter, pin one backend so a comparison
# with Bedrock is fair:
# extra = { provider = { only = ["moonshotai"], allow_fallbacks = false } }

# Routes: an ordered list of targets with watchdogs, retries, hedging, fallback and a circuit
# breaker (keys: retry, backoff, hedge, breaker, watchdog, buffered). Probed as "route:NAME".
[routes.kimi]
targets = ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
# hedge = 0.8                   # start a backup attempt when no event came in 0.8 s
# retry = { max_attempts = 3 }

# Your own scenario: messages, tools and what the answer must satisfy.
[scenarios.weather-after-result]
description = "The seed's request after a tool result, with a system prompt."
system = "You are a terse assistant."
max_tokens = 100
tools = ["get_weather"]         # the built-in weather tool, or tables
                                # { name, description, parameters }

[[scenarios.weather-after-result.messages]]
role = "user"
content = "Weather for Tokyo?"

[[scenarios.weather-after-result.messages]]
role = "assistant"
content = "Getting it."
tool_calls = [{ id = "abc123xyz", name = "get_weather", arguments = { city = "Tokyo" } }]

[[scenarios.weather-after-result.messages]]
role = "tool"
tool_call_id = "abc123xyz"
content = '{"temp":22}'

[scenarios.weather-after-result.expect]
text_regex = '\\b22\\b'         # the answer must mention 22
stop_reasons = ["end_turn"]     # allowed stop reasons
# tool_name = "get_weather"     # a tool the model must call
# arguments_schema = { type = "object", required = ["city"] }
# min_tool_calls = 2            # tool calls required in one response

# Real endpoints (uncomment, and point targets at them):
# [providers.aws]
# api = "bedrock-converse-stream"
# endpoint = "https://bedrock-runtime.us-east-1.amazonaws.com"
# region = "us-east-1"
# auth = { kind = "sigv4", profile = "default" }    # or { kind = "bedrock-api-key" }
#
# [providers.openrouter-live]
# api = "openai-completions"
# endpoint = "https://openrouter.ai/api/v1"
# auth = { kind = "bearer", env = "OPENROUTER_API_KEY" }
"""


@click.command("init")
@click.option(
    "--path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("callproof.toml"),
    show_default=True,
    help="Where to write the example.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented example callproof.toml (the seeds' matrix on the emulator).

    Exit codes: 0 written; 2 the file exists (use --force), or it cannot be written (a
    read-only directory, a path under a file).
    """
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; use --force to overwrite it", where="init")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(EXAMPLE_TOML, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {exc.filename or path}: {exc.strerror or exc}", where="init"
        ) from None
    click.echo(f"wrote {path}; run `callproof run` to probe it")
