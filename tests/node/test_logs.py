"""Logging (node/logs.py, node/imports.py): --verbosity, --log-format json, the one line
per imported block, and ``pouw-node --version``."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from node.imports import ImportLog
from node.logs import JsonFormatter, TextFormatter, parse_verbosity, setup_logging
from tests.node.test_cli import cli, init, pouw_node


@pytest.fixture
def dev_datadir(tmp_path: Path) -> Path:
    datadir = tmp_path / "dev"
    init(datadir, "dev")
    return datadir


@pytest.fixture(autouse=True)
def restore_logging() -> Any:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.disable(logging.NOTSET)


def test_verbosity_accepts_geth_numbers_and_level_names() -> None:
    assert parse_verbosity("3") == logging.INFO and parse_verbosity("info") == logging.INFO
    assert parse_verbosity("4") == parse_verbosity("DEBUG") == logging.DEBUG
    assert parse_verbosity("1") == logging.ERROR and parse_verbosity("warn") == logging.WARNING
    assert parse_verbosity("0") > logging.CRITICAL and parse_verbosity("5") < logging.DEBUG


@pytest.mark.parametrize("text", ["6", "-1", "loud", "", "3.5"])
def test_invalid_verbosity(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="verbosity 0..5"):
        parse_verbosity(text)


def test_invalid_verbosity_on_the_command_line_is_a_usage_error(dev_datadir: Path) -> None:
    result = cli("run", "--datadir", dev_datadir, "--verbosity", "9")
    assert result.returncode == 2 and "verbosity 0..5" in result.stderr and "Traceback" not in result.stderr
    result = cli("run", "--datadir", dev_datadir, "--log-format", "xml")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def _record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("chain.import", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_fields() -> None:
    line = JsonFormatter().format(_record("imported block #%d", 7, fields={"number": 7, "hash": "0xab", "level": "x"}))
    doc = json.loads(line)
    assert doc["message"] == "imported block #7" and doc["level"] == "info" and doc["logger"] == "chain.import"
    assert doc["number"] == 7 and doc["hash"] == "0xab"
    assert doc["time"].endswith("Z") and "T" in doc["time"]
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in doc["exception"] and "\n" not in JsonFormatter().format(record)
    text = TextFormatter().format(_record("plain %s", "words"))
    assert text.endswith("INFO  chain.import: plain words")


def test_invalid_log_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        setup_logging(logging.INFO, "xml")


def test_silent_means_no_line_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(parse_verbosity("0"), "text")
    logging.getLogger("x").critical("not shown")
    assert capsys.readouterr().err == ""


class _FakeChain:
    """Just enough of a chain for the import log: import_block and an engine."""

    def __init__(self) -> None:
        self.engine = self
        self.verified = 0

    def verify_work(self, *args: Any) -> None:
        time.sleep(0.002)
        self.verified += 1

    def import_block(self, block: Any, payload: Any = None) -> Any:
        if block == "bad":
            raise ValueError("invalid")
        self.engine.verify_work(block)
        header = argparse.Namespace(block_number=block, job_id=(5).to_bytes(32, "big"), step_count=40)
        imported = argparse.Namespace(header=header, hash=bytes([block]) * 32, transactions=[1, 2])
        return argparse.Namespace(imported=imported, already_known=block == 99, reorg=False)


def test_the_import_log_records_each_new_block_once(caplog: pytest.LogCaptureFixture) -> None:
    chain = _FakeChain()
    log = ImportLog(chain, job_label=lambda j: f"job-{j}", keep=3).attach()
    seen: list[Any] = []
    log.listeners.append(seen.append)
    log.listeners.append(lambda record: 1 / 0)  # a failing listener never fails an import
    caplog.set_level(logging.INFO, "chain.import")
    for number in (1, 2, 99, 3, 4):
        chain.import_block(number)
    with pytest.raises(ValueError):
        chain.import_block("bad")  # an invalid block: the chain's error, no record
    assert [r.number for r in seen] == [1, 2, 3, 4]  # 99 was already known
    assert [r.number for r in log.recent(10)] == [4, 3, 2]  # newest first, three kept
    assert log.get(bytes([1]) * 32) is None and log.get(bytes([4]) * 32) is seen[-1]
    record = seen[0]
    assert record.job_id == 5 and record.steps == 40 and record.transactions == 2 and record.source == "local"
    assert record.verify_seconds is not None and record.verify_seconds >= 0.002
    assert record.import_seconds >= record.verify_seconds
    lines = [r for r in caplog.records if r.getMessage().startswith("imported block")]
    assert len(lines) == 4 and "job=job-5 steps=40 txs=2 verify=" in lines[0].getMessage()
    assert lines[0].fields["peer"] == "local" and lines[0].fields["number"] == 1  # type: ignore[attr-defined]


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("pouw-node 0.1.0 (python 3.")
    assert "torch" in result.stdout


def test_run_at_verbosity_2_logs_no_info_and_json_logs_are_json(dev_datadir: Path) -> None:
    command = [*pouw_node(), "run", "--datadir", str(dev_datadir), "--no-rpc", "--no-p2p", "--dev-period", "1"]
    proc = subprocess.Popen([*command, "--verbosity", "2"], stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, quiet = proc.communicate(timeout=30)
    assert proc.returncode == 0 and quiet.strip() == "", quiet

    proc = subprocess.Popen([*command, "--log-format", "json"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    docs = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        docs.append(json.loads(line))
        if docs[-1]["message"].startswith("imported block"):
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0
    docs += [json.loads(line) for line in rest.splitlines()]
    blocks = [d for d in docs if d["message"].startswith("imported block")]
    assert blocks, docs
    first = blocks[0]
    assert first["peer"] == "local" and first["job"] == "-" and first["steps"] == 0 and first["number"] >= 1
    assert first["verifyMs"] >= 0 and first["importMs"] > 0 and first["logger"] == "chain.import"
    assert any("received SIGINT" in d["message"] for d in docs)
