"""``callproof emulate --max-streams``: the stream limit is the user's to raise or lower."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from .conftest import FIRST_TURN


def test_max_streams_bounds_the_streams_served_at_once() -> None:
    args = ["--port", "0", "--preset", "fast", "--max-streams", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "callproof", "emulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        path = f"{url}/model/amazon.nova-pro-v1%3A0/converse-stream"
        with httpx.Client(timeout=30) as http:
            # one stream held open (headers, then nothing) takes the only slot
            with http.stream(
                "POST",
                path,
                json={"messages": FIRST_TURN},
                headers={"x-callproof-fault": "hang_no_events"},
            ) as held:
                assert held.status_code == 200
                refused = http.post(path, json={"messages": FIRST_TURN})
                assert refused.status_code == 429
            # the slot is free again once the held stream is closed
            for _ in range(50):
                again = http.post(path, json={"messages": FIRST_TURN})
                if again.status_code == 200:
                    break
            assert again.status_code == 200
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert "Traceback" not in err


def test_max_streams_below_one_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callproof", "emulate", "--port", "0", "--max-streams", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--max-streams" in result.stderr
    assert "Traceback" not in result.stderr
