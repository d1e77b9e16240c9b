"""What a report says, derived from the summary and the records: the statements a reader files.

Everything here is a pure function of ``summary.json`` entries (and, for the root cause, the
failing records and ``run.json``'s timeouts), so each sentence can be checked against the data:

* :func:`mode_rates` - each failure mode of an entry with its own count and rate (a 27% hang and
  a 13% throttle are two statements, never "40% stall"); HTTP errors split by status.
* :func:`model_family` / :func:`same_model_peer` - the comparison partner: the same model served
  by another provider (``moonshotai.kimi-k2.5`` on Bedrock and ``moonshotai/kimi-k2.5`` on
  OpenRouter are one family), or the target named by ``compare_with``. A route is never the
  comparison: it contains the failing target. :func:`route_fix` reports it as the fix.
* :func:`headline` (the summary's sentences), :func:`recommendations`, :func:`root_cause`
  (hypotheses the outcome mix supports and rules out) and :func:`unreachable_entries` (targets
  never reached: every attempt a transport error, no headers, or HTTP 401/403/404).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callproof.outcomes import Outcome
from callproof.probe.stats import format_p, format_pct
from callproof.probe.summary import UNREACHABLE_STATUSES
from callproof.record import AttemptRecord

__all__ = [
    "UNREACHABLE_STATUSES",
    "Hypothesis",
    "ModeRate",
    "headline",
    "headline_entry",
    "mode_of",
    "mode_rates",
    "model_family",
    "recommendations",
    "root_cause",
    "route_fix",
    "same_model_peer",
    "same_provider_alternative",
    "unreachable_entries",
]

_MEANINGS = {
    "stall_before_headers": "no response headers within the first-event timeout",
    "stall_no_events": "headers, then no stream events",
    "stall_mid_stream": "events, then a gap longer than the idle timeout",
    "deadline_exceeded": "the total deadline passed",
    "incomplete_stream": "the stream ended without its terminal event",
    "empty_response": "a normal stop with no text and no tool call",
    "abnormal_stop": "an unexpected stop reason",
    "tool_call_malformed": "tool-call arguments invalid",
    "tool_call_in_text": "tool-call markup in the text",
    "http_error": "a non-2xx answer",
    "stream_exception": "an exception in the stream",
    "protocol_error": "undecodable bytes",
    "transport_error": "connection refused, reset, or TLS failure",
    "expectation_failed": "the answer failed the scenario's check",
}
_HTTP_MEANINGS = {
    429: "throttled",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    529: "overloaded",
    401: "unauthorised",
    403: "forbidden",
    404: "not found",
    400: "request rejected",
}
_STALLS = frozenset({"stall_before_headers", "stall_no_events", "stall_mid_stream"})
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|ap|global|us-gov|ca|jp|au)\.")
_VERSION_SUFFIX = re.compile(r"(?:-v\d+)?(?::\d+)?$")


@dataclass(frozen=True, slots=True)
class ModeRate:
    """One failure mode of an entry: ``name`` (``http_error 429`` for statuses), its count."""

    name: str
    count: int
    n: int
    meaning: str

    @property
    def rate(self) -> float:
        return self.count / self.n if self.n else 0.0

    def text(self) -> str:
        """``stall_no_events 7/30 (23%: headers, then no stream events)``."""
        return f"{self.name} {self.count}/{self.n} ({format_pct(self.rate)}: {self.meaning})"


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """A possible cause, whether the data supports it, and the evidence either way."""

    cause: str
    supported: bool
    evidence: str


def mode_rates(entry: dict[str, Any]) -> list[ModeRate]:
    """Each failure mode of ``entry`` with its own rate, most frequent first; ``http_error``
    split by status when the summary carries ``http_statuses``."""
    n = int(entry.get("n") or 0)
    statuses: dict[str, int] = entry.get("http_statuses") or {}
    modes: list[ModeRate] = []
    for name, count in entry.get("outcomes", {}).items():
        if name == "ok" or not count:
            continue
        if name == "http_error" and statuses:
            counted = 0
            for status, hits in sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])):
                code = int(status) if str(status).isdigit() else 0
                meaning = _HTTP_MEANINGS.get(code, "a non-2xx answer")
                modes.append(
                    ModeRate(f"http_error {status}", int(hits), n, f"HTTP {status} {meaning}")
                )
                counted += int(hits)
            if count > counted:
                modes.append(ModeRate("http_error", count - counted, n, _MEANINGS[name]))
            continue
        modes.append(ModeRate(name, int(count), n, _MEANINGS.get(name, name)))
    modes.sort(key=lambda m: (-m.count, m.name))
    return modes


def mode_of(record: AttemptRecord | Mapping[str, Any]) -> str:
    """The failure-mode name of one record, as :func:`mode_rates` names it."""
    rec = AttemptRecord.of(record)
    status = rec.error.status if rec.error is not None else None
    if rec.outcome is Outcome.HTTP_ERROR and status is not None:
        return f"http_error {status}"
    return str(rec.outcome)


def model_family(model: str | None) -> str:
    """A provider-independent model key: region prefix, vendor prefix and version suffix gone,
    punctuation folded (``us.moonshotai.kimi-k2.5:0`` and ``moonshotai/kimi-k2.5`` both give
    ``kimik25``)."""
    text = str(model or "").lower().strip()
    text = _REGION_PREFIX.sub("", text)
    parts = re.split(r"[/.]", text, maxsplit=1)
    if len(parts) == 2 and parts[1] and not parts[0][:1].isdigit():
        text = parts[1]
    text = _VERSION_SUFFIX.sub("", text)
    return re.sub(r"[^a-z0-9]+", "", text)


def _is_route(entry: dict[str, Any]) -> bool:
    return str(entry.get("target", "")).startswith("route:") or "route" in entry


def _same_scenario(summary: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = summary.get("results", [])
    return [
        e
        for e in results
        if e["scenario"] == entry["scenario"] and e["target"] != entry["target"] and e["n"]
    ]


def same_model_peer(
    summary: dict[str, Any], entry: dict[str, Any], compare_with: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The entry to compare ``entry`` with: ``compare_with[target]`` when given, else the same
    model family on another provider (best pass rate first); never a route; None when there is
    no such target in the run."""
    peers = _same_scenario(summary, entry)
    wanted = (compare_with or {}).get(entry["target"])
    if wanted:
        for e in peers:
            if e["target"] == wanted:
                return e
    family = model_family(entry.get("model"))
    if not family:
        return None
    alike = [
        e
        for e in peers
        if not _is_route(e)
        and model_family(e.get("model")) == family
        and (e.get("provider") != entry.get("provider") or e.get("api") != entry.get("api"))
    ]
    if not alike:
        return None
    return max(alike, key=lambda e: (e["pass_rate"], e["n"]))


def route_fix(summary: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any] | None:
    """A route of the same scenario that does better than ``entry`` (routes holding the failing
    target first, then the best pass rate, then the fewest requests per call)."""
    routes = [e for e in _same_scenario(summary, entry) if _is_route(e)]
    better = [e for e in routes if e["pass_rate"] > entry["pass_rate"]]
    if not better:
        return None

    def holds(e: dict[str, Any]) -> bool:
        return entry["target"] in ((e.get("route") or {}).get("attempts_by_target") or {})

    return max(
        better, key=lambda e: (holds(e), e["pass_rate"], -(e.get("requests_per_call") or 1.0))
    )


def same_provider_alternative(
    summary: dict[str, Any], entry: dict[str, Any]
) -> dict[str, Any] | None:
    """Another model on the same provider that does better (best pass rate), or None."""
    family = model_family(entry.get("model"))
    alternatives = [
        e
        for e in _same_scenario(summary, entry)
        if not _is_route(e)
        and e.get("provider") == entry.get("provider")
        and model_family(e.get("model")) != family
        and e["pass_rate"] > entry["pass_rate"]
    ]
    return max(alternatives, key=lambda e: (e["pass_rate"], e["n"])) if alternatives else None


def headline_entry(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The entry the report is about: the lowest pass rate that failed at least once, plain
    targets before routes on ties, then the most attempts."""
    results: list[dict[str, Any]] = summary.get("results", [])
    failing = [e for e in results if e["n"] and e["passed"] < e["n"]]
    if not failing:
        return None
    return min(failing, key=lambda e: (e["pass_rate"], _is_route(e), -e["n"]))


def unreachable_entries(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets never reached: every attempt a transport error, a stall before headers, or an
    HTTP 401/403/404 (see ``unreachable`` in the summary entries)."""
    results: list[dict[str, Any]] = summary.get("results", [])
    return [e for e in results if e.get("n") and e.get("unreachable")]


def _rate(entry: dict[str, Any]) -> str:
    return f"{entry['passed']}/{entry['n']} ({format_pct(entry['pass_rate'])})"


def _comparison(summary: dict[str, Any], a: str, b: str, scenario: str) -> dict[str, Any] | None:
    comparisons: list[dict[str, Any]] = summary.get("comparisons", [])
    for c in comparisons:
        if c["scenario"] == scenario and {c["a"], c["b"]} == {a, b}:
            return c
    return None


def _fisher(summary: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> str:
    c = _comparison(summary, a["target"], b["target"], a["scenario"])
    if c is None:
        return ""
    verdict = "a significant difference" if c["significant"] else "not significant at this n"
    return f" (Fisher's exact test {format_p(c['p_value'])}: {verdict})"


def headline(summary: dict[str, Any], compare_with: dict[str, str] | None = None) -> list[str]:
    """The executive summary's sentences; each names counts that ``summary`` holds."""
    results: list[dict[str, Any]] = summary.get("results", [])
    if not results:
        return ["No attempts were recorded."]
    sentences: list[str] = []
    for e in unreachable_entries(summary):
        outcomes = ", ".join(f"{k} {v}" for k, v in e["outcomes"].items())
        sentences.append(
            f"{e['target']} was never reached: all {e['n']} {e['scenario']} attempts ended "
            f"before a usable answer ({outcomes}); check its endpoint, credentials and model id."
        )
    worst = headline_entry(summary)
    if worst is None:
        total = sum(e["n"] for e in results)
        return [f"Every target passed every attempt ({total} attempts): no failure observed."]
    failed = worst["n"] - worst["passed"]
    modes = mode_rates(worst)
    sentences.append(
        f"{worst['target']} fails {failed}/{worst['n']} ({format_pct(failed / worst['n'])}) of "
        f"{worst['scenario']} requests: " + "; ".join(m.text() for m in modes) + "."
    )
    peer = same_model_peer(summary, worst, compare_with)
    if peer is not None:
        chosen = (compare_with or {}).get(worst["target"]) == peer["target"]
        what = (
            f"Its comparison target (compare_with), {peer['target']},"
            if chosen
            else f"The same model on another provider, {peer['target']},"
        )
        sentences.append(
            f"{what} passed {_rate(peer)} of the same requests{_fisher(summary, worst, peer)}."
        )
    elif not _is_route(worst):
        sentences.append(
            "No other provider of the same model was probed, so the model and the provider "
            "cannot be told apart from this run."
        )
    fix = route_fix(summary, worst)
    if fix is not None:
        rpc = fix.get("requests_per_call")
        cost = f" at {rpc:.2f} requests per call" if isinstance(rpc, (int, float)) else ""
        sentences.append(f"The fix: {fix['target']} passed {_rate(fix)}{cost}.")
    steps = worst["compound"][-1] if worst.get("compound") else None
    if steps is not None:
        sentences.append(
            f"At {format_pct(worst['pass_rate'])} per call, an agent that needs "
            f"{steps['steps']} sequential tool uses succeeds {format_pct(steps['success'])} "
            f"of the time (95% CI {format_pct(steps['ci95'][0])} to "
            f"{format_pct(steps['ci95'][1])})."
        )
    return sentences


def recommendations(
    summary: dict[str, Any], compare_with: dict[str, str] | None = None
) -> list[str]:
    """What to do, each with the numbers behind it (empty when nothing failed)."""
    worst = headline_entry(summary)
    out: list[str] = [
        f"Fix the configuration of {e['target']} before reading its numbers: it was never "
        "reached (endpoint, credentials, region or model id)."
        for e in unreachable_entries(summary)
    ]
    if worst is None:
        return out
    fix = route_fix(summary, worst)
    if fix is not None:
        rpc = fix.get("requests_per_call")
        served = ", ".join(
            f"{k} {v}" for k, v in ((fix.get("route") or {}).get("served_by") or {}).items()
        )
        out.append(
            f"Route through {fix['target']}: it passed {_rate(fix)}"
            + (f" at {rpc:.2f} requests per call" if isinstance(rpc, (int, float)) else "")
            + (f" (served by {served})" if served else "")
            + f", against {_rate(worst)} for {worst['target']} alone."
        )
    peer = same_model_peer(summary, worst, compare_with)
    if peer is not None and peer["pass_rate"] > worst["pass_rate"]:
        out.append(
            f"Serve the same model from {peer['target']} "
            f"({peer.get('provider') or 'another'} provider): {_rate(peer)}"
            f"{_fisher(summary, worst, peer)}."
        )
    alt = same_provider_alternative(summary, worst)
    if alt is not None:
        out.append(
            f"On the same provider, {alt['target']} ({alt.get('model')}) passed {_rate(alt)}."
        )
    modes = {m.name for m in mode_rates(worst)}
    if any(m in _STALLS for m in modes):
        out.append(
            f"Keep a first-event and idle timeout on every call to {worst['target']}: a stall "
            "never ends by itself, and a retry after the timeout is what recovers."
        )
    if "http_error 429" in modes:
        out.append(
            f"Back off and retry on throttling (HTTP 429) from {worst['target']}, or raise its "
            "quota: throttles are a separate failure from the stalls."
        )
    if worst["n"] < 30:
        out.append(
            f"Run more attempts (-n 30 or more): at n = {worst['n']} the 95% interval is "
            f"{format_pct(worst['ci95'][0])} to {format_pct(worst['ci95'][1])}."
        )
    return out


def _timeout(meta: dict[str, Any], target: str, key: str) -> float | None:
    for t in meta.get("targets") or []:
        if isinstance(t, dict) and t.get("name") == target:
            value = (t.get("timeouts") or {}).get(key)
            return float(value) if isinstance(value, (int, float)) else None
    return None


def root_cause(
    summary: dict[str, Any],
    meta: dict[str, Any],
    failures: Sequence[dict[str, Any]],
    compare_with: dict[str, str] | None = None,
    timeline: Sequence[tuple[str, str, str, str, bool]] = (),
) -> list[Hypothesis]:
    """Hypotheses for the headline target's failures, each marked supported or ruled out by
    the outcome mix, the timings and the other targets of the run."""
    worst = headline_entry(summary)
    if worst is None:
        return []
    mine = [
        r
        for r in failures
        if r.get("target") == worst["target"] and r.get("scenario") == worst["scenario"]
    ]
    outcomes = Counter(str(r.get("outcome")) for r in mine)
    out: list[Hypothesis] = []
    stalls = sum(outcomes[o] for o in ("stall_no_events", "stall_mid_stream"))
    with_headers = sum(
        1 for r in mine if isinstance((r.get("timings") or {}).get("headers_s"), (int, float))
    )
    never = outcomes["transport_error"] + outcomes["stall_before_headers"]
    out.append(
        Hypothesis(
            "The network or the connection to the provider",
            never > 0,
            f"{never} of {len(mine)} failing attempts never got response headers"
            if never
            else f"all {len(mine)} failing attempts got response headers "
            f"({with_headers} with a measured time): the connection worked",
        )
    )
    if stalls:
        fe_p99 = worst["latency_s"]["first_event"].get("p99")
        timeout = _timeout(meta, worst["target"], "first_event")
        tight = isinstance(fe_p99, (int, float)) and timeout is not None and fe_p99 > timeout / 2
        evidence = (
            f"passing attempts' first event p99 is {fe_p99:.2f} s against a first-event "
            f"timeout of {timeout:g} s"
            if isinstance(fe_p99, (int, float)) and timeout is not None
            else "no passing first-event times to compare with the timeout"
        )
        out.append(Hypothesis("The client's timeouts are too tight", tight, evidence))
        out.append(
            Hypothesis(
                "The provider accepts the request and then never streams (a server-side hang)",
                supported=True,
                evidence=f"{stalls} attempts got headers and then no (further) event",
            )
        )
    throttles = sum(1 for r in mine if (r.get("error") or {}).get("status") == 429)
    if throttles:
        out.append(
            Hypothesis(
                "Throttling (rate limit or quota)",
                supported=True,
                evidence=f"{throttles} attempts answered HTTP 429 (counted as their own "
                "failure mode, not as hangs)",
            )
        )
    if throttles and stalls:
        burst = _hangs_after_throttles(worst, timeline)
        if burst is not None:
            out.append(burst)
    peer = same_model_peer(summary, worst, compare_with)
    if peer is not None:
        c = _comparison(summary, worst["target"], peer["target"], worst["scenario"])
        significant = bool(c and c["significant"] and peer["pass_rate"] > worst["pass_rate"])
        out.append(
            Hypothesis(
                "The model itself (it would fail on any provider)",
                not significant,
                f"the same model on {peer['target']} passed {_rate(peer)} against "
                f"{_rate(worst)}" + _fisher(summary, worst, peer),
            )
        )
    if worst["passed"]:
        out.append(
            Hypothesis(
                "A malformed request (it would fail every time)",
                supported=False,
                evidence=f"the identical request passed {worst['passed']} of {worst['n']} times",
            )
        )
    stops = Counter(
        str(r.get("raw_stop_reason") or r.get("stop_reason") or "")
        for r in mine
        if r.get("outcome") == "abnormal_stop"
    )
    if stops:
        shown = ", ".join(f"{k or 'none'} ×{v}" for k, v in stops.items())
        out.append(
            Hypothesis(
                "A stop the provider chose (content filter, length, guardrail)",
                supported=True,
                evidence=f"abnormal stop reasons: {shown}",
            )
        )
    return out


def _hangs_after_throttles(
    worst: dict[str, Any], timeline: Sequence[tuple[str, str, str, str, bool]]
) -> Hypothesis | None:
    """Whether the hangs follow throttling: how often the attempt started just before a hang
    (same target, UTC start order) was an HTTP error, against how often any attempt was one.
    Supported when that is over twice the base rate (and at least two hangs follow one)."""
    mine = sorted(
        (start, outcome)
        for start, target, scenario, outcome, _ in timeline
        if target == worst["target"] and scenario == worst["scenario"]
    )
    if len(mine) < 3:
        return None
    outcomes = [o for _, o in mine]
    base = outcomes.count("http_error") / len(outcomes)
    hangs = [i for i, o in enumerate(outcomes) if o in ("stall_no_events", "stall_mid_stream")]
    after = sum(1 for i in hangs if i > 0 and outcomes[i - 1] == "http_error")
    ratio = after / len(hangs) if hangs else 0.0
    return Hypothesis(
        "The hangs are a side effect of throttling bursts",
        supported=after >= 2 and ratio > 2 * base,
        evidence=f"{after} of {len(hangs)} hangs started right after an HTTP error of the same "
        f"target ({format_pct(ratio)}), against {format_pct(base)} of all its attempts being "
        "HTTP errors (see the timeline chart)",
    )
