"""Reading ``run.json`` meta leniently: targets and scenarios as lists or as name-keyed maps."""

from __future__ import annotations

import json
from typing import Any

from callproof.redact import redact_url

__all__ = [
    "grouped_requests",
    "meta_requests",
    "meta_scenarios",
    "meta_targets",
    "pretty_json",
    "target_row",
]


def _named(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, dict):
        out = []
        for name, value in items.items():
            entry = dict(value) if isinstance(value, dict) else {"value": value}
            entry.setdefault("name", name)
            out.append(entry)
        return out
    if isinstance(items, list):
        return [dict(item) if isinstance(item, dict) else {"name": str(item)} for item in items]
    return []


def meta_targets(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's targets, each a dict with at least ``name``."""
    return _named(meta.get("targets"))


def meta_scenarios(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's scenarios, each a dict with at least ``name``."""
    return _named(meta.get("scenarios"))


def meta_requests(scenario: dict[str, Any]) -> list[tuple[str, Any]]:
    """(target, exact request body) pairs recorded for one scenario."""
    for key in ("requests", "request_bodies", "bodies", "request"):
        value = scenario.get(key)
        if isinstance(value, dict) and value:
            if all(isinstance(v, (dict, list, str)) for v in value.values()) and not (
                "messages" in value or "input" in value
            ):
                return [(str(k), v) for k, v in value.items()]
            return [("", value)]
        if isinstance(value, list) and value:
            pairs = []
            for item in value:
                if isinstance(item, dict):
                    target = str(item.get("target") or item.get("name") or "")
                    body = item.get("body", item.get("request", item))
                    pairs.append((target, body))
            return pairs
    return []


def pretty_json(value: Any, limit: int = 6000) -> str:
    """Indented JSON (strings pass through), cut at ``limit`` characters."""
    if isinstance(value, str):
        text_value: str = value
        try:
            value = json.loads(text_value)
        except ValueError:
            return text_value[:limit]
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if len(text) > limit:
        text = text[:limit] + "\n... (cut)"
    return text


def target_row(target: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """Name, API, model, provider, endpoint and timeouts of one target (or route) as text."""
    endpoint = target.get("endpoint")
    if isinstance(endpoint, dict):
        endpoint = endpoint.get("base_url") or endpoint.get("url")
    members = target.get("members")
    if isinstance(endpoint, str) and endpoint:
        endpoint = redact_url(endpoint)
    if not endpoint and isinstance(members, list) and members:
        names = [str(m.get("name")) for m in members if isinstance(m, dict)]
        endpoint = "route over " + " → ".join(names)
    timeouts = target.get("timeouts") or meta.get("timeouts")
    if isinstance(timeouts, dict):
        timeouts = ", ".join(f"{k} {v}s" for k, v in timeouts.items() if v is not None)
    return [
        str(target.get("name")),
        str(target.get("api") or "-"),
        str(target.get("model") or "-"),
        str(target.get("provider") or "-"),
        str(endpoint or "-"),
        str(timeouts or "-"),
    ]


def grouped_requests(scenario: dict[str, Any]) -> list[tuple[list[str], Any]]:
    """Like :func:`meta_requests`, with targets that were sent the same body grouped."""
    groups: dict[str, tuple[list[str], Any]] = {}
    for target, body in meta_requests(scenario):
        key = json.dumps(body, sort_keys=True, default=str)
        if key in groups:
            groups[key][0].append(target)
        else:
            groups[key] = ([target] if target else [], body)
    return list(groups.values())
