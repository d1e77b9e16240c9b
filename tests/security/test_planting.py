"""The secret-planting test: every credential source, through every command, 0 hits.

Planted: an API key in the environment (with ``+/=`` so its percent form differs), SigV4
credentials (access key id, secret key, session token), URL user info, query keys (``key``,
``sig``, ``code``), credential headers (``Ocp-Apim-Subscription-Key``, ``X-Access-Key``) and a
PostgreSQL password in ``--db``. A loopback echo server (:mod:`tests.security.echo`) reflects
every one it receives in its answer (raw, base64 and percent-encoded, written five bytes at a
time so each is split across reads). The real ``callproof`` command runs ``call``, ``run``,
``replay``, ``report``, ``history`` and ``emulate --replay``, with captures and DEBUG (and TRACE)
logs on. Then every file written, every byte of output and every row of the history database
is searched for each secret in each form: there must be none.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.probe.conftest_pg import pg_server, pg_url  # noqa: F401 - fixtures
from tests.security.echo import echo_server

pytestmark = pytest.mark.slow


def _token(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(10)}"


SECRETS = {
    "env_key": _token("sk-plant+") + "/x=",
    "aws_key_id": "AKIA" + secrets.token_hex(8).upper(),
    "aws_secret": _token("awssecret"),
    "aws_token": _token("awstoken"),
    "userinfo_pw": _token("userpw"),
    "query_key": _token("qkey"),
    "query_sig": _token("qsig"),
    "query_code": _token("qcode"),
    "hdr_apim": _token("apim"),
    "hdr_access": _token("access"),
    "db_pw": _token("dbpw"),
}


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        quote(secret, safe=""),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def basic_forms() -> set[str]:
    # What httpx sends for user info: base64("user:password")
    raw = f"planter:{SECRETS['userinfo_pw']}".encode()
    return {base64.b64encode(raw).decode().rstrip("=")}


ALL_FORMS = {f: name for name, s in SECRETS.items() for f in forms(s)} | dict.fromkeys(
    basic_forms(), "basic"
)


#: Not even part of one: every 16-character window of every form (a table cell cut with an
#: ellipsis, or a secret split across two events, would give a piece away).
FRAGMENTS = {
    form[i : i + 16]: name
    for form, name in ALL_FORMS.items()
    for i in range(max(1, len(form) - 15))
}


def hits(text: str) -> list[str]:
    return sorted({name for piece, name in FRAGMENTS.items() if piece in text})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CALLPROOF_DATA_DIR")
        or k.startswith(("AWS_CONFIG", "AWS_SHARED"))
    }
    return {
        **keep,
        "PLANT_KEY": SECRETS["env_key"],
        "AWS_ACCESS_KEY_ID": SECRETS["aws_key_id"],
        "AWS_SECRET_ACCESS_KEY": SECRETS["aws_secret"],
        "AWS_SESSION_TOKEN": SECRETS["aws_token"],
        "AWS_REGION": "us-east-1",
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }


class Transcript:
    """Every command run and everything it printed."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.outputs: list[tuple[list[str], str]] = []

    def run(self, *args: str, ok: tuple[int, ...] = (0, 1)) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "callproof", "--log-level", "DEBUG", *args]
        proc = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        self.outputs.append((argv, proc.stdout + proc.stderr))
        assert proc.returncode in ok, (args, proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def echo() -> Iterator[str]:
    with echo_server() as url:
        yield url


CONFIG = """\
[defaults]
n = 2
concurrency = 2
scenarios = ["tool-result", "must-fail"]
timeouts = {{ connect = 5.0, first_event = 20.0, idle = 20.0, deadline = 60.0 }}

[providers.echo-openai]
api = "openai-completions"
endpoint = "{openai_url}"
auth = {{ kind = "bearer", env = "PLANT_KEY" }}
headers = {{ "Ocp-Apim-Subscription-Key" = "{hdr_apim}", "X-Access-Key" = "{hdr_access}" }}

[providers.echo-bedrock]
api = "bedrock-converse-stream"
endpoint = "{bedrock_url}"
region = "us-east-1"
auth = {{ kind = "sigv4" }}

[targets.echo-chat]
provider = "echo-openai"
model = "echo-model"

[targets.echo-nova]
provider = "echo-bedrock"
model = "amazon.nova-micro-v1:0"

[scenarios.must-fail]
description = "Never passes, so that every attempt is captured."
max_tokens = 50
[[scenarios.must-fail.messages]]
role = "user"
content = "Say something."
[scenarios.must-fail.expect]
text_regex = 'NEVER-IN-THE-ANSWER'
"""


def test_no_planted_secret_reaches_any_file_output_or_row(
    tmp_path: Path,
    env: dict[str, str],
    echo: str,
    pg_url: str,  # noqa: F811 - fixture
) -> None:
    import psycopg

    s = SECRETS
    host = echo.removeprefix("http://")
    openai_url = (
        f"http://planter:{s['userinfo_pw']}@{host}/v1"
        f"?key={s['query_key']}&sig={s['query_sig']}&code={s['query_code']}"
    )
    db = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{s['db_pw']}@")
    (tmp_path / "callproof.toml").write_text(
        CONFIG.format(
            openai_url=openai_url,
            bedrock_url=echo,
            hdr_apim=s["hdr_apim"],
            hdr_access=s["hdr_access"],
        ),
        encoding="utf-8",
    )
    t = Transcript(tmp_path, env)

    # -- call: OpenAI-compatible with every kind of key; Bedrock with SigV4 -----------------
    for flags in (["--json"], ["-v"]):
        t.run(
            "call",
            "--api",
            "openai-completions",
            "--model",
            "echo-model",
            "--endpoint",
            openai_url,
            "--api-key-env",
            "PLANT_KEY",
            "--header",
            f"Ocp-Apim-Subscription-Key:{s['hdr_apim']}",
            "--header",
            f"X-Access-Key:{s['hdr_access']}",
            "--capture",
            f"chat{flags[0]}.jsonl",
            *flags,
        )
    t.run(
        "call",
        "--api",
        "bedrock-converse-stream",
        "--model",
        "amazon.nova-micro-v1:0",
        "--endpoint",
        echo,
        "--region",
        "us-east-1",
        "--auth",
        "sigv4",
        "--capture",
        "nova.jsonl",
        "-v",
    )
    # TRACE lets the wire loggers (httpx, botocore's canonical request) through: redacted.
    trace = t.run(
        "--log-level",
        "TRACE",
        "call",
        "--api",
        "bedrock-converse-stream",
        "--model",
        "amazon.nova-micro-v1:0",
        "--endpoint",
        echo,
        "--auth",
        "sigv4",
    )
    assert "CanonicalRequest" in trace.stderr or "Calculating signature" in trace.stderr

    # The answer really reflected the keys (else the test proves nothing): redacted in place.
    chat = t.run("replay", "chat--json.jsonl", "-v")
    assert "[REDACTED]" in chat.stdout
    nova = t.run("replay", "nova.jsonl", "--json")
    assert '"outcome": "ok"' in nova.stdout or '"outcome":"ok"' in nova.stdout

    # -- run, with captures of every failing attempt, history in PostgreSQL -----------------
    t.run("run", "--out", "runs/one", "--db", db, "--capture-failures")
    assert list((tmp_path / "runs/one/captures").glob("*.jsonl"))
    t.run("report", "runs/one")
    t.run("history", "--db", db)
    listed = t.run("history", "--db", db, "--json")
    run_id = listed.stdout.split('"run_id": "', 1)[1].split('"', 1)[0]
    t.run("report", run_id, "--db", db, "--out", "rebuilt")

    # -- emulate --replay serves the scrubbed capture; a client reads it -----------------
    port = _free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callproof",
            "--log-level",
            "DEBUG",
            "emulate",
            "--replay",
            "nova.jsonl",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        served = t.run(
            "call",
            "--api",
            "bedrock-converse-stream",
            "--model",
            "amazon.nova-micro-v1:0",
            "--endpoint",
            url,
            "--auth",
            "none",
            "-v",
            "--json",
        )
        assert '"ok"' in served.stdout
    finally:
        emulator.terminate()
        out, err = emulator.communicate(timeout=30)
    t.outputs.append((["emulate", "--replay"], url + out + err))

    # -- search everything --------------------------------------------------------------
    found: dict[str, list[str]] = {}
    for argv, text in t.outputs:
        if h := hits(text):
            found[" ".join(argv[3:6])] = h
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "callproof.toml"]
    assert len(written) > 10
    for path in written:
        if h := hits(path.read_bytes().decode("utf-8", "replace")):
            found[str(path.relative_to(tmp_path))] = h
    with psycopg.connect(pg_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
            )
        ]
        assert "attempts" in tables
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            if h := hits(repr(rows)):
                found[f"db:{table}"] = h
    assert found == {}
