"""Signing keys of the client tools: plaintext key files, encrypted keystores, ``pouw-node account``.

The node itself holds no keys; the tools that sign (``pouw-node job submit|cancel``) do,
on the user's machine. A key comes from ``--key-file FILE`` or ``$POUW_PRIVATE_KEY``,
never from an argument (anyone on the machine can read arguments in ``ps``). The file is
either

* a **keystore** (Web3 Secret Storage, version 3: the JSON that geth, clef, MetaMask and
  eth-account write), decrypted with the password from ``--password-file`` (its first
  line) or typed at a terminal prompt; or
* a **plaintext key**: 64 hex digits, with or without 0x (kept working; ``account
  import`` turns one into a keystore).

``pouw-node account new|list|import`` manages a keystore directory (``--keystore DIR``,
default ``$POUW_KEYSTORE`` or ``~/.pouw-node/keystore``) as geth does: one file per
account, named ``UTC--<time>--<address>``, mode 0600 in a 0700 directory, encrypted with
scrypt (n = 262144 by default, like geth; ``--light-kdf`` uses n = 4096, like geth's
``--lightkdf``: fast, and weaker against a password guesser).
"""
from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from client.clitools import EXIT_ERROR, EXIT_OK

KEY_ENV = "POUW_PRIVATE_KEY"
KEYSTORE_ENV = "POUW_KEYSTORE"
DEFAULT_KEYSTORE = Path("~/.pouw-node/keystore")
STANDARD_SCRYPT_N = 262144
"""geth's StandardScryptN: about a second and 256 MiB per encryption or decryption."""
LIGHT_SCRYPT_N = 4096
"""geth's LightScryptN (``--lightkdf``)."""
MAX_KEYFILE_BYTES = 64 * 1024
MIN_PASSWORD_CHARS = 1


class KeyFileError(Exception):
    """A key or keystore problem, reported as one ``error: ...`` line (never the key)."""


# --- reading keys ---------------------------------------------------------------------------


def _read_small(path: Path, what: str) -> tuple[str, bool]:
    """A small text file and whether others may read it."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise KeyFileError(f"{what} {path} is a directory")
        with open(path, "rb") as f:
            data = f.read(MAX_KEYFILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEYFILE_BYTES:
        raise KeyFileError(f"{what} {path} is too large for a key file ({MAX_KEYFILE_BYTES} bytes at most)")
    return data.decode("utf-8", errors="replace"), bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_password_file(path: Path) -> str:
    """The first line of ``path``, without its line ending (geth's ``--password`` rule)."""
    text, _ = _read_small(path, "password file")
    lines = text.splitlines()
    return lines[0] if lines else ""


def prompt_password(prompt: str = "Password: ", *, confirm: bool = False) -> str:
    """Ask at the terminal (no echo); refuses when there is no terminal to ask at."""
    if not sys.stdin.isatty():
        raise KeyFileError("a password is needed and there is no terminal to ask at: pass --password-file FILE")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise KeyFileError("the passwords do not match")
    return password


def parse_plaintext_key(text: str, source: str) -> bytes:
    """32 key bytes from 64 hex digits (0x optional, surrounding whitespace ignored)."""
    body = text.strip()
    if body[:2] in ("0x", "0X"):
        body = body[2:]
    if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
        # never echo the content: it may be a key with a typo
        raise KeyFileError(
            f"{source} does not hold a private key (64 hex digits, optionally 0x-prefixed) nor a keystore (JSON)"
        )
    return bytes.fromhex(body)


def is_keystore_text(text: str) -> bool:
    return text.lstrip().startswith("{")


def decrypt_keystore(text: str, password: str, source: str) -> bytes:
    """The private key in a version-3 keystore; a clear error for anything else."""
    from eth_account import Account

    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"{source} is not a valid keystore (bad JSON: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("crypto", doc.get("Crypto")), dict):
        raise KeyFileError(f"{source} is not a keystore: no 'crypto' section")
    if doc.get("version") != 3:
        raise KeyFileError(f"{source}: unsupported keystore version {doc.get('version')!r} (expected 3)")
    try:
        return bytes(Account.decrypt(doc, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeyFileError(f"{source}: wrong password (the keystore's MAC does not match)") from None
        raise KeyFileError(f"{source}: cannot decrypt the keystore: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - eth_keyfile raises KeyError/TypeError on a malformed file
        raise KeyFileError(f"{source}: malformed keystore ({type(exc).__name__}: {exc})") from None


def _account(key: bytes, source: str) -> Any:
    from eth_account import Account

    try:
        return Account.from_key(key)
    except Exception as exc:  # noqa: BLE001 - eth_keys' ValidationError for an out-of-range key
        raise KeyFileError(f"{source}: not a valid secp256k1 private key ({type(exc).__name__})") from None


def load_signing_account(
    key_file: Optional[Path],
    password_file: Optional[Path] = None,
    *,
    warn: Callable[[str], None] = lambda message: print(f"warning: {message}", file=sys.stderr),
) -> Any:
    """The account that signs: ``key_file`` (keystore or plaintext) else ``$POUW_PRIVATE_KEY``.

    A keystore's password comes from ``password_file``, else a terminal prompt. A file
    others can read gets a warning (a plaintext key there is as good as published).
    """
    if key_file is not None:
        text, loose = _read_small(key_file, "key file")
        source = f"key file {key_file}"
        if is_keystore_text(text):
            password = read_password_file(password_file) if password_file is not None else \
                prompt_password(f"Password for {key_file}: ")
            account = _account(decrypt_keystore(text, password, source), source)
        else:
            account = _account(parse_plaintext_key(text, source), source)
            if loose:
                warn(f"key file {key_file} is readable by other users (chmod 600 it, or make it a keystore: "
                     "pouw-node account import)")
        return account
    if os.environ.get(KEY_ENV):
        source = f"${KEY_ENV}"
        return _account(parse_plaintext_key(os.environ[KEY_ENV], source), source)
    raise KeyFileError(f"no signing key: pass --key-file FILE (a keystore or a hex key) or set {KEY_ENV}")


# --- the keystore directory ---------------------------------------------------------------


@dataclass(frozen=True)
class KeystoreEntry:
    address: str
    """Checksummed address."""
    path: Path


def keystore_dir(value: Optional[Path]) -> Path:
    if value is not None:
        return value.expanduser()
    env = os.environ.get(KEYSTORE_ENV)
    return Path(env).expanduser() if env else DEFAULT_KEYSTORE.expanduser()


def list_keystore(directory: Path) -> list[KeystoreEntry]:
    """The keystore files in ``directory`` (sorted by file name, i.e. creation time), each
    with the address it declares; files that are not keystores are skipped."""
    from eth_utils import is_hex_address, to_checksum_address

    if not directory.is_dir():
        return []
    out: list[KeystoreEntry] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            text, _ = _read_small(path, "keystore file")
            doc = json.loads(text)
        except (KeyFileError, ValueError):
            continue
        address = doc.get("address") if isinstance(doc, dict) else None
        if isinstance(address, str) and is_hex_address("0x" + address.removeprefix("0x")):
            out.append(KeystoreEntry(to_checksum_address("0x" + address.removeprefix("0x")), path))
    return out


def write_keystore(directory: Path, key: bytes, password: str, *, light: bool = False) -> KeystoreEntry:
    """Encrypt ``key`` into a new file of ``directory`` (created 0700); refuses an
    address already there."""
    from eth_account import Account

    account = _account(key, "the key")
    if any(entry.address == account.address for entry in list_keystore(directory)):
        raise KeyFileError(f"account {account.address} is already in the keystore {directory}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise KeyFileError("refusing an empty password: the keystore would protect nothing")
    doc = Account.encrypt(key, password, kdf="scrypt", iterations=LIGHT_SCRYPT_N if light else STANDARD_SCRYPT_N)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = f"UTC--{now.strftime('%Y-%m-%dT%H-%M-%S.%f')}000Z--{account.address[2:].lower()}"
    path = directory / name
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return KeystoreEntry(account.address, path)


# --- commands -------------------------------------------------------------------------------


def _password(args: argparse.Namespace, *, confirm: bool) -> str:
    if args.password_file is not None:
        return read_password_file(args.password_file)
    return prompt_password("Password for the new keystore: ", confirm=confirm)


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except KeyFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except OSError as exc:
            from client.clitools import describe_os_error

            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
            return EXIT_ERROR

    wrapper.__name__ = func.__name__
    return wrapper


@_run
def cmd_account_new(args: argparse.Namespace) -> int:
    directory = keystore_dir(args.keystore)
    password = _password(args, confirm=True)
    key = os.urandom(32)
    entry = write_keystore(directory, key, password, light=args.light_kdf)
    _report(args, entry, "new account")
    return EXIT_OK


@_run
def cmd_account_import(args: argparse.Namespace) -> int:
    directory = keystore_dir(args.keystore)
    text, _ = _read_small(args.file, "key file")
    if is_keystore_text(text):
        raise KeyFileError(f"{args.file} is already a keystore: copy it into {directory} as it is")
    key = parse_plaintext_key(text, f"key file {args.file}")
    password = _password(args, confirm=True)
    entry = write_keystore(directory, key, password, light=args.light_kdf)
    _report(args, entry, "imported account")
    if not args.json:
        print(f"the plaintext key file {args.file} is still there: delete it once you have checked the keystore")
    return EXIT_OK


def _report(args: argparse.Namespace, entry: KeystoreEntry, what: str) -> None:
    if args.json:
        print(json.dumps({"address": entry.address, "path": str(entry.path)}))
        return
    print(f"{what}: {entry.address}")
    print(f"keystore file: {entry.path}")
    print("sign with it: --key-file <that file> --password-file <your password file>")


@_run
def cmd_account_list(args: argparse.Namespace) -> int:
    directory = keystore_dir(args.keystore)
    entries = list_keystore(directory)
    if args.json:
        print(json.dumps([{"address": e.address, "path": str(e.path)} for e in entries]))
        return EXIT_OK
    if not entries:
        print(f"no accounts in {directory} (create one: pouw-node account new)")
    for index, entry in enumerate(entries):
        print(f"Account #{index}: {entry.address} keystore://{entry.path}")
    return EXIT_OK


def add_account_commands(subparsers: Any) -> argparse.ArgumentParser:
    """``pouw-node account new|list|import`` on ``pouw-node``'s subparsers."""
    from client.clitools import command_group

    account, commands = command_group(
        subparsers, "account", "create, list and import signing keys in an encrypted keystore directory",
        "Encrypted keystores (Web3 Secret Storage v3, as geth writes them) for the keys that sign "
        "job postings and cancellations. The node itself holds no keys.",
    )

    def sub(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help, description=help)
        parser.add_argument("--keystore", type=Path, default=None, metavar="DIR",
                            help=f"keystore directory (default ${KEYSTORE_ENV} or {DEFAULT_KEYSTORE})")
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")
        parser.set_defaults(func=func)
        return parser

    def secret(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--password-file", type=Path, default=None, metavar="FILE",
                            help="read the password from the first line of FILE (default: ask at the terminal)")
        parser.add_argument("--light-kdf", action="store_true",
                            help=f"scrypt n={LIGHT_SCRYPT_N} instead of {STANDARD_SCRYPT_N}: fast, weaker against guessing")

    secret(sub("new", cmd_account_new, "create a new key and store it encrypted"))
    sub("list", cmd_account_list, "list the accounts in the keystore")
    imp = sub("import", cmd_account_import, "encrypt a plaintext hex key file into the keystore")
    imp.add_argument("file", type=Path, metavar="KEYFILE", help="file holding the hex private key")
    secret(imp)
    return account


__all__ = [
    "load_signing_account", "decrypt_keystore", "write_keystore", "list_keystore", "keystore_dir",
    "read_password_file", "KeyFileError", "add_account_commands",
]
