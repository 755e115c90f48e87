"""Keys of the client tools (client/keys.py): ``pouw-node account new|list|import`` writes
standard encrypted keystores that eth-account (and so geth, clef, MetaMask) reads back;
``--key-file`` takes a keystore with ``--password-file`` or a plaintext hex key."""
from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.cli import main
from client.keys import KeyFileError, load_signing_account, write_keystore

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # public test key
ADDRESS = Account.from_key(KEY).address


@pytest.fixture(autouse=True)
def restore_process_state(cli_process_state: None) -> None:
    """node.cli.main installs a SIGTERM handler and its log handler: undone (conftest)."""


def account(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["account", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password.txt"
    path.write_text("correct horse battery staple\nsecond line is ignored\n")
    path.chmod(0o600)
    return path


def test_new_list_and_sign_with_a_keystore(tmp_path: Path, password_file: Path, capsys: Any) -> None:
    store = tmp_path / "keystore"
    rc, out, err = account(capsys, "new", "--keystore", str(store), "--password-file", str(password_file),
                           "--light-kdf", "--json")
    assert rc == 0, err
    created = json.loads(out)
    path = Path(created["path"])
    assert path.parent == store and path.name.startswith("UTC--") and path.name.endswith(created["address"][2:].lower())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(store.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["version"] == 3 and doc["crypto"]["kdf"] == "scrypt" and doc["crypto"]["kdfparams"]["n"] == 4096
    assert "correct horse" not in path.read_text()
    # eth-account reads it back: a standard keystore
    key = Account.decrypt(doc, "correct horse battery staple")
    assert Account.from_key(key).address == created["address"]

    rc, out, err = account(capsys, "list", "--keystore", str(store))
    assert rc == 0 and out.strip() == f"Account #0: {created['address']} keystore://{path}"
    # --key-file accepts it with --password-file
    signer = load_signing_account(path, password_file)
    assert signer.address == created["address"]


def test_import_a_plaintext_key(tmp_path: Path, password_file: Path, capsys: Any) -> None:
    store = tmp_path / "keystore"
    plain = tmp_path / "dapp.key"
    plain.write_text(KEY + "\n")
    rc, out, err = account(capsys, "import", str(plain), "--keystore", str(store), "--password-file",
                           str(password_file), "--light-kdf")
    assert rc == 0, err
    assert f"imported account: {ADDRESS}" in out and "still there" in out
    [entry] = list(store.iterdir())
    assert load_signing_account(entry, password_file).key.hex() == KEY[2:]
    # the same account twice is refused, and nothing is written
    rc, out, err = account(capsys, "import", str(plain), "--keystore", str(store), "--password-file",
                           str(password_file), "--light-kdf")
    assert rc == 1 and err.startswith("error: ") and "already in the keystore" in err
    assert len(list(store.iterdir())) == 1
    # plaintext keys keep working as --key-file
    assert load_signing_account(plain).address == ADDRESS


def test_the_keystore_directory_from_the_environment(tmp_path: Path, password_file: Path, capsys: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POUW_KEYSTORE", str(tmp_path / "env-store"))
    rc, out, err = account(capsys, "list")
    assert rc == 0 and "no accounts in" in out
    rc, out, err = account(capsys, "new", "--password-file", str(password_file), "--light-kdf")
    assert rc == 0 and len(list((tmp_path / "env-store").iterdir())) == 1


def test_invalid_wrong_password(tmp_path: Path, password_file: Path) -> None:
    entry = write_keystore(tmp_path / "ks", bytes.fromhex(KEY[2:]), "right", light=True)
    with pytest.raises(KeyFileError, match="wrong password"):
        load_signing_account(entry.path, password_file)


def test_invalid_keystore_without_a_password_or_a_terminal(tmp_path: Path) -> None:
    entry = write_keystore(tmp_path / "ks", bytes.fromhex(KEY[2:]), "right", light=True)
    with pytest.raises(KeyFileError, match="no terminal to ask at: pass --password-file"):
        load_signing_account(entry.path, None)  # pytest's stdin is not a terminal


@pytest.mark.parametrize("content,message", [
    ('{"version": 3}', "no 'crypto' section"),
    ('{"version": 1, "crypto": {}}', "unsupported keystore version"),
    ('{"version": 3, "crypto": {"cipher": "aes-128-ctr"}}', "malformed keystore"),
    ("{not json", "bad JSON"),
    ("correct horse battery staple", "does not hold a private key"),
    ("", "does not hold a private key"),
])
def test_invalid_key_files(tmp_path: Path, password_file: Path, content: str, message: str) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=message) as caught:
        load_signing_account(path, password_file)
    assert "horse" not in str(caught.value)  # a file's content is never echoed


def test_invalid_key_file_paths(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="No such file"):
        load_signing_account(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="is a directory"):
        load_signing_account(tmp_path)
    huge = tmp_path / "huge"
    huge.write_bytes(b"0" * 200_000)
    with pytest.raises(KeyFileError, match="too large"):
        load_signing_account(huge)


def test_invalid_account_commands(tmp_path: Path, capsys: Any) -> None:
    empty = tmp_path / "empty-password"
    empty.write_text("\n")
    rc, out, err = account(capsys, "new", "--keystore", str(tmp_path / "ks"), "--password-file", str(empty), "--light-kdf")
    assert rc == 1 and "empty password" in err and not (tmp_path / "ks").exists()
    rc, out, err = account(capsys, "new", "--keystore", str(tmp_path / "ks"))  # no password file, no terminal
    assert rc == 1 and "--password-file" in err
    keystore = write_keystore(tmp_path / "ks2", bytes.fromhex(KEY[2:]), "pw", light=True)
    rc, out, err = account(capsys, "import", str(keystore.path), "--keystore", str(tmp_path / "ks3"))
    assert rc == 1 and "already a keystore" in err
    rc, out, err = account(capsys, "import", str(tmp_path / "nope"), "--keystore", str(tmp_path / "ks3"))
    assert rc == 1 and "nope" in err and "Traceback" not in err
    capsys.readouterr()
    assert main(["account"]) == 2
