"""`make run` on a stock Debian 12 Python (PEP 668), with an empty HOME and no uv on PATH.

The tree is copied to a temporary directory (the shared ``.venv`` is never touched), then
``make run`` runs with ``/usr/bin`` first on PATH, so the only Python is the distribution's and
``pip install`` into it is refused (externally-managed-environment). The Makefile must
bootstrap uv into ``.tools/uv-venv`` and sync the locked environment on that interpreter.

Package cache: the test is about the interpreter, HOME and PATH, not the network, so
``UV_CACHE_DIR`` is a hard-linked copy of this machine's uv cache when one exists on the same
filesystem (uv writes new cache entries by rename, so the original is never modified), and an
empty directory otherwise (uv then downloads the locked wheels from PyPI: hence ``slow`` and a
generous timeout). pip's download of uv itself always starts from an empty cache. The machine's
TLS settings (``SSL_CERT_FILE``/``SSL_CERT_DIR``, proxies) are passed through: they are system
configuration, not user state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
STOCK_PATH = "/usr/bin:/bin"
PASSED_THROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "http_proxy", "https_proxy", "no_proxy")


def _stock_system_or_skip() -> None:
    if not sys.platform.startswith("linux") or not SYSTEM_PYTHON.exists():
        pytest.skip("needs a distribution python3 at /usr/bin/python3")
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if version.stdout.strip() != "True":
        pytest.skip("/usr/bin/python3 is older than 3.11")
    if shutil.which("make", path=STOCK_PATH) is None:
        pytest.skip("make is not installed in /usr/bin")
    if shutil.which("uv", path=STOCK_PATH) is not None:
        pytest.skip("uv is installed system-wide in /usr/bin: no PATH without uv to test")


def _copy_tree(dest: Path) -> None:
    """The working tree's files (tracked and untracked-but-not-ignored): what a clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if not source.is_file() or name.startswith("tests/node/node_modules"):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _uv_cache(tmp: Path) -> Path:
    cache = tmp / "uv-cache"
    existing = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
    if existing.is_dir():
        linked = subprocess.run(
            ["cp", "-al", str(existing), str(cache)], capture_output=True, check=False
        )
        if linked.returncode == 0:
            return cache
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    return cache


def _stock_env(tmp: Path, path: str = STOCK_PATH) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "COLUMNS": "100"}
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    return env


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_make_run_on_the_distribution_python_with_an_empty_home(tmp_path: Path) -> None:
    _stock_system_or_skip()
    repo = tmp_path / "repo"
    _copy_tree(repo)
    env = _stock_env(tmp_path)
    env["UV_CACHE_DIR"] = str(_uv_cache(tmp_path))
    assert list((tmp_path / "home").iterdir()) == []

    done = subprocess.run(
        ["make", "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=1100
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "externally-managed-environment" not in output
    assert "setup: uv not found; installing uv" in output
    assert (repo / ".tools" / "uv-venv" / "bin" / "uv").exists()
    # The project's environment runs on the distribution's interpreter (no download).
    config = (repo / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in config
    # The system Python was left alone: still no uv importable there.
    untouched = subprocess.run([str(SYSTEM_PYTHON), "-m", "uv", "--version"], capture_output=True)
    assert untouched.returncode != 0
    # The probe ran and wrote its reports.
    assert "Run directory:" in output
    runs = list((repo / "callproof-runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "report.html").stat().st_size > 0
    assert (runs[0] / "results.jsonl").stat().st_size > 0

    # A second `make run` reuses the private uv (no second bootstrap).
    again = subprocess.run(
        ["make", "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "installing uv" not in again.stdout + again.stderr


def test_make_setup_says_what_to_install_when_venv_is_missing(tmp_path: Path) -> None:
    """A python3 without the venv module (Debian without python3-venv): one clear instruction."""
    _stock_system_or_skip()
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "Makefile", repo / "Makefile")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "python3"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        "  echo 'The virtual environment was not created successfully because ensurepip is not"
        " available.' >&2; exit 1\nfi\n"
        f'exec {SYSTEM_PYTHON} "$@"\n'
    )
    fake.chmod(0o755)
    env = _stock_env(tmp_path, path=f"{fake_bin}:{STOCK_PATH}")
    done = subprocess.run(
        ["make", "setup"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "apt install python3-venv" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (repo / ".tools" / "uv-venv").exists()
