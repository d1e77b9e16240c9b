"""Run one of the tests' Node scripts (unmodified Node clients) and parse its last JSON line.

Shared by the gateway and interop suites; each keeps its own policy for a missing Node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def run_node(
    binary: str,
    script: Path,
    url: str,
    spec: dict[str, Any],
    *,
    ca: Path | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """``node SCRIPT URL SPEC_JSON``; the script must exit 0 and print a JSON object line."""
    env = {**os.environ, "NODE_NO_WARNINGS": "1"}
    if ca is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca)
    done = subprocess.run(
        [binary, str(script), url, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    failed = f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, failed
    assert lines, failed
    result: dict[str, Any] = json.loads(lines[-1])
    return result
