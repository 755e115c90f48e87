"""scripts/setup.sh: a second run with nothing changed installs nothing and prints nothing."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAMP = ROOT / ".venv" / ".pouw-setup-stamp"


@pytest.mark.skipif(not STAMP.exists(), reason="the venv was not made by scripts/setup.sh")
def test_setup_is_quiet_and_installs_nothing_when_nothing_changed(tmp_path: Path) -> None:
    # up to date first (a no-op after scripts/test.sh; an install if pyproject.toml changed since)
    subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    log = ROOT / ".venv" / "setup.log"
    before = log.stat().st_mtime_ns if log.exists() else None
    stamp = STAMP.read_text()
    # a pip that fails loudly: if setup.sh called it, the run would fail
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("pip", "pip3"):
        (fake_bin / name).write_text("#!/bin/sh\necho 'pip must not run' >&2\nexit 99\n")
        (fake_bin / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert STAMP.read_text() == stamp
    assert (log.stat().st_mtime_ns if log.exists() else None) == before


def test_the_stamp_covers_pyproject_and_the_script() -> None:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert "cat pyproject.toml scripts/setup.sh" in text and "sys.version" in text
