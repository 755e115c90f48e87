"""``pouw-node job submit|status|list|result|cancel|watch`` and ``pouw-node rewards``: the job market from a terminal.

A client of a node's JSON-RPC (``--rpc URL``, default http://127.0.0.1:8545) through
web3.py and :class:`client.web3_module.PouwModule`; it opens no datadir. ``node/cli.py``
adds these commands with :func:`add_job_commands` and :func:`add_rewards_command`.

The private key that signs a job posting or cancellation is read from ``--key-file FILE``
(an encrypted keystore with ``--password-file``, or a plaintext hex key: client/keys.py) or
from the ``POUW_PRIVATE_KEY`` environment variable, never from a command-line argument,
which any user could read in ``ps``.

Guards before anything is signed: a posting whose escrow is above ``--confirm-above``
(default 1 ETH) is confirmed at the terminal, or needs ``--yes`` (a ``--price 1eth`` typo
for ``1gwei`` would otherwise lock thousands of ETH); a posting to a chain that never
trains jobs (a development genesis) is refused unless ``--allow-untrained``.

Exit codes as ``node/cli.py``: 0 success, 1 an error (one ``error: ...`` line on
stderr, the node's own message for a refused request), 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Optional

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
"""The same values as node/cli.py's."""

DEFAULT_RPC = "http://127.0.0.1:8545"
KEY_ENV = "POUW_PRIVATE_KEY"
ETHER = 10**18
CONFIRM_ABOVE_DEFAULT = ETHER
"""Escrow above this (1 ETH) is confirmed at the terminal or with --yes."""


class JobCliError(Exception):
    """A failure to report as one ``error: ...`` line."""


# --- helpers ----------------------------------------------------------------------------


def connect(url: str, request_timeout: float = 30.0) -> Any:
    """web3.py on ``url`` with the pouw module attached; fails at once when unreachable."""
    from web3 import Web3

    from client.web3_module import PouwModule

    provider = Web3.HTTPProvider(url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=None)
    w3 = Web3(provider)
    w3.attach_modules({"pouw": PouwModule})
    return w3


def load_private_key(key_file: Optional[Path], password_file: Optional[Path] = None) -> Any:
    """The signing account: ``--key-file`` (keystore or plaintext hex) first, else
    ``$POUW_PRIVATE_KEY`` (client/keys.py)."""
    from client.keys import KeyFileError, load_signing_account

    try:
        return load_signing_account(key_file, password_file)
    except KeyFileError as exc:
        raise JobCliError(str(exc)) from None


def read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise JobCliError(f"spec file {path}: {exc.strerror or exc}") from None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise JobCliError(f"spec file {path} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise JobCliError(f"spec file {path}: expected a JSON object (docs/protocol.md §2)")
    return spec


def wei(value: Optional[int]) -> str:
    """``1500000000000000000 wei (1.5 ETH)``; small amounts in gwei."""
    if value is None:
        return "-"
    if value >= 10**15:
        return f"{value} wei ({_trim(Decimal(value) / ETHER)} ETH)"
    if value >= 10**6:
        return f"{value} wei ({_trim(Decimal(value) / 10**9)} gwei)"
    return f"{value} wei"


def _trim(d: Decimal) -> str:
    text = f"{d:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _hex(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value)


from consensus.params import job_label  # noqa: E402

_job_label = job_label


def ether(value: Optional[int]) -> str:
    """Wei as ETH with every digit that matters: ``1.5 ETH``, ``0.000000003 ETH``."""
    if value is None:
        return "-"
    text = f"{Decimal(value) / ETHER:.18f}".rstrip("0").rstrip(".")
    return f"{text or '0'} ETH"


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def confirm(question: str, yes: bool, refusal: str) -> None:
    """Go on when ``yes``; else ask at the terminal (y/N); with no terminal, refuse with
    ``refusal`` (which says to pass --yes)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise JobCliError(refusal)
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise JobCliError("not confirmed: nothing was sent")


def parse_job_id(text: str) -> int:
    """A job id: decimal, 0x-hex, or ``standing-N``."""
    from consensus.params import STANDING_JOB_BASE

    raw = text.strip()
    try:
        if raw.startswith("standing-"):
            return STANDING_JOB_BASE + int(raw[len("standing-"):], 10)
        value = int(raw, 16) if raw[:2] in ("0x", "0X") else int(raw, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a job id (decimal, 0x-hex or standing-N), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative job id, got {text}")
    return value


def _amount(text: str) -> int:
    """Wei: an integer, or with a unit: ``2gwei``, ``0.5ether``."""
    raw = text.strip().lower().replace("_", "")
    for unit, scale in (("ether", ETHER), ("eth", ETHER), ("gwei", 10**9), ("wei", 1)):
        if raw.endswith(unit):
            number = raw[: -len(unit)].strip()
            try:
                amount = Decimal(number) * scale
            except ArithmeticError:
                break
            if amount != amount.to_integral_value() or amount < 0:
                raise argparse.ArgumentTypeError(f"{text}: not a whole number of wei")
            return int(amount)
    try:
        value = int(raw, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in wei (e.g. 1000000000 or 1gwei), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative amount, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text}")
    return value


def _describe_exception(exc: BaseException, url: str) -> str:
    """One line for an error of the node, the network or the input."""
    import requests
    from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception, Web3RPCError

    from client.web3_module import rpc_error_message

    if isinstance(exc, JobCliError):
        return str(exc)
    if isinstance(exc, ContractLogicError):
        return f"the registry refused the job: {exc.message or exc}"
    if isinstance(exc, Web3RPCError):
        return f"the node refused: {rpc_error_message(exc)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot reach the node at {url} (is pouw-node run serving JSON-RPC there? use --rpc URL)"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"the node at {url} did not answer in time"
    if isinstance(exc, requests.exceptions.RequestException):
        return f"JSON-RPC request to {url} failed: {exc}"
    if isinstance(exc, TimeExhausted):
        return str(exc)
    if isinstance(exc, Web3Exception):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Every job command: any failure becomes one ``error: ...`` line and exit 1."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in one line, as node/cli.py does
            print(f"error: {_describe_exception(exc, args.rpc)}", file=sys.stderr)
            return EXIT_ERROR

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _print_json(value: Any) -> None:
    from web3 import Web3

    print(Web3.to_json(value))


# --- commands ------------------------------------------------------------------------------


@_run
def cmd_job_submit(args: argparse.Namespace) -> int:
    spec = read_spec(args.spec)
    account = load_private_key(args.key_file, args.password_file)
    timeout = args.timeout
    w3 = connect(args.rpc, request_timeout=30.0)
    if args.dataset is not None:
        try:
            blob = args.dataset.read_bytes()
        except OSError as exc:
            raise JobCliError(f"dataset file {args.dataset}: {exc.strerror or exc}") from None
        info = w3.pouw.put_dataset(blob)
        spec["dataset"] = "0x" + bytes(info.id).hex()
        if not args.json:
            print(f"dataset: {spec['dataset']} uploaded ({info.size} bytes, {info.trainExamples} train / "
                  f"{info.testExamples} test examples)")
    estimate = w3.pouw.estimate_job(spec, args.price)
    escrow = args.escrow if args.escrow is not None else estimate.escrowRequired
    if not estimate.datasetAvailable:
        raise JobCliError(f"dataset {spec.get('dataset')} is not on the node: pass --dataset FILE to upload it")
    if estimate.get("trainsJobs") is False and not args.allow_untrained:
        raise JobCliError(f"{estimate.get('warning') or 'this chain never trains jobs'}; "
                          "pass --allow-untrained to post it all the same")
    if not args.json:
        print(f"estimate: {estimate.steps} steps, about {_estimate_time(estimate)}")
    if escrow > args.confirm_above:
        confirm(
            f"Lock {ether(escrow)} in escrow ({estimate.steps} steps at {ether(args.price)} per step)?", args.yes,
            f"the escrow, {ether(escrow)} ({estimate.steps} steps at {ether(args.price)} per step), is above "
            f"--confirm-above {ether(args.confirm_above)}: pass --yes to post it (or check --price: 1gwei, not 1eth?)",
        )
    result = w3.pouw.submit_job(account, spec, args.price, escrow=escrow, timeout=timeout,
                                allow_untrained=args.allow_untrained)
    if args.json:
        _print_json({**result, "dataset": spec.get("dataset"), "escrow": escrow})
        return EXIT_OK if result.status != "failed" else EXIT_ERROR
    print(f"transaction: {_hex(result.transactionHash)}")
    if result.status == "posted":
        print(f"job: {result.jobId}")
        print(f"block: {result.blockNumber}")
        print(f"escrow: {wei(escrow)} for {estimate.steps} steps at {wei(args.price)} per step")
        print(f"follow it: pouw-node job status {result.jobId} --rpc {args.rpc}")
        return EXIT_OK
    if result.status == "pending":
        print(f"status: pending (not mined within {timeout:g} s); the job id comes with its receipt: "
              f"check again with eth_getTransactionReceipt or pouw-node job list --poster {account.address}")
        return EXIT_OK
    raise JobCliError(f"the job transaction {_hex(result.transactionHash)} failed in block "
                      f"{result.blockNumber}: {result.get('error') or 'reverted'}")


def _estimate_time(estimate: Any) -> str:
    seconds = estimate.get("expectedSeconds")
    if seconds is None:
        return "no estimate (this chain does no work)"
    basis = "the measured network work rate" if estimate.get("expectedSecondsBasis") == "measured" \
        else "the target block time (no work measured yet)"
    return f"{estimate.expectedBlocks} block(s), {duration(seconds)} at {basis}"


def format_job(job: Any) -> list[str]:
    spec = job.spec or {}
    lines = [f"job {_job_label(job.id)} ({job.kind}): {job.status}"]
    lines.append(f"progress: {job.stepsDone}/{job.stepBudget} steps ({100 * job.progress:.1f}%)")
    if job.kind == "posted":
        lines.append(f"poster: {job.poster}")
        lines.append(f"price: {wei(job.pricePerStep)} per step")
        lines.append(f"escrow: {wei(job.escrowLeft)} left of {wei(job.initialEscrow)}")
        lines.append(f"fees paid: {wei(job.feesPaid)}")
        lines.append(f"posted: block {job.postedBlock}, transaction {_hex(job.postedTransaction)}")
    lines.append(f"checkpoint: {_hex(job.checkpoint)}")
    if spec:
        shape = "x".join(str(d) for d in spec.get("input_shape", []))
        hidden = ",".join(str(h) for h in spec.get("hidden", []))
        lines.append(
            f"spec: {spec.get('family')} {shape} -> [{hidden}] -> {spec.get('num_classes')} classes, "
            f"batch {spec.get('batch_size')}, lr 2^-{spec.get('lr_shift')}, dataset {spec.get('dataset')}"
        )
    lines.append(f"spec hash: {_hex(job.specHash)}")
    if job.workUnitsPerStep is not None:
        lines.append(f"work units per step: {job.workUnitsPerStep}")
    if job.get("audit") is not None:
        lines.append(format_audit(job.audit))
    return lines


def format_audit(audit: Mapping[str, object]) -> str:
    """One line: a job's audit state (``pouw_getJob``'s ``audit``; docs/protocol.md §21)."""
    through = audit.get("auditedThrough")
    within = f"through block {through}" if through is not None else ""
    found = audit.get("found")
    if audit.get("state") == "fraudFound" and isinstance(found, (list, tuple)) and found \
            and isinstance(found[0], Mapping):
        first = found[0]
        steps = first.get("steps")
        span = f" (steps {steps[0]}..{steps[1]})" if isinstance(steps, (list, tuple)) and len(steps) == 2 else ""
        return (f"audit: FRAUD FOUND by this node in block {first.get('blockNumber')}, segment "
                f"{first.get('segment')}{span}, not yet proven on chain ({first.get('status')})")
    if audit.get("state") == "audited":
        text = f"audit: audited {within}: every step of the current result recomputed by this node, honest"
    elif audit.get("state") == "fraudProven":
        text = "audit: fraud proven" + (f", current result partly audited {within}" if within else "")
    else:
        text = "audit: unaudited" + (f" (partly audited {within})" if within else
                                     " (this node runs no auditor over the job's blocks)")
    last = audit.get("lastFraud")
    if isinstance(last, Mapping):
        text += (f"; {audit.get('fraudsProven')} fraud(s) proven, the last in block {last.get('blockNumber')} "
                 f"segment {last.get('segment')}: the job was rolled back to the honest state before it")
    return text


@_run
def cmd_job_status(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    job = w3.pouw.get_job(args.job_id)
    if job is None:
        raise JobCliError(f"job {_job_label(args.job_id)} not found on the node at {args.rpc}")
    if args.json:
        _print_json(job)
    else:
        print("\n".join(format_job(job)))
    return EXIT_OK


@_run
def cmd_job_list(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    kwargs: dict[str, Any] = {"include_standing": not args.no_standing}
    if args.status:
        kwargs["status"] = args.status
    if args.poster:
        kwargs["poster"] = args.poster
    if args.limit is not None:
        kwargs["limit"] = args.limit
    if args.from_id is not None:
        kwargs["from_id"] = args.from_id
    jobs = w3.pouw.list_jobs(**kwargs)
    if args.json:
        _print_json(jobs)
        return EXIT_OK
    if not jobs:
        print("no jobs")
        return EXIT_OK
    rows = [("ID", "STATUS", "PROGRESS", "PRICE/STEP", "ESCROW LEFT", "FEES PAID", "FAMILY", "POSTER")]
    for job in jobs:
        rows.append((
            _job_label(job.id), job.status, f"{job.stepsDone}/{job.stepBudget}", str(job.pricePerStep),
            str(job.escrowLeft), str(job.feesPaid), (job.spec or {}).get("family", "?"), job.poster or "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return EXIT_OK


@_run
def cmd_job_result(args: argparse.Namespace) -> int:
    w3 = connect(args.rpc)
    result = w3.pouw.get_job_result(args.job_id, include_state=args.state_out is not None)
    if result is None:
        raise JobCliError(f"job {_job_label(args.job_id)} not found on the node at {args.rpc}")
    model = bytes(result.model)
    if args.check:  # the bytes load into the job's architecture
        from client.web3_module import model_from_result

        model_from_result(result)
    if args.state_out is not None:
        state = bytes(result.state)
        from pouw.blobstore import state_blob_hash

        if state_blob_hash(state) != bytes(result.checkpoint):
            raise JobCliError("the node's state does not hash to the job's checkpoint: not written")
    _write(args.out, model)
    if args.state_out is not None:
        _write(args.state_out, state)
    if args.json:
        _print_json({k: v for k, v in result.items() if k not in ("model", "state")})
        return EXIT_OK
    final = "final" if result.final else f"not final: the job is {result.status}, the latest checkpoint"
    print(f"job {_job_label(result.jobId)}: {result.stepsDone} steps ({final})")
    print(f"checkpoint: {_hex(result.checkpoint)}")
    print(f"model: {args.out} ({len(model)} bytes, {result.format}, float32 torch state_dict)")
    if args.state_out is not None:
        print(f"state: {args.state_out} ({len(state)} bytes, canonical integer state; its BLAKE3 state hash = checkpoint)")
    metrics = result.get("metrics")
    if metrics:
        print(f"metrics ({metrics.split}, exact): accuracy {100 * metrics.accuracy:.2f}% "
              f"({metrics.correct}/{metrics.examples}), loss {metrics.loss:.6f}")
    else:
        print(f"metrics: unavailable ({result.get('metricsError') or 'the node computed none'})")
    scale = result.get("inputScale")
    if scale is not None:
        print(f"input: x_int8.float() * {scale:g}")
    if result.get("audit") is not None:
        print(format_audit(result.audit))
    return EXIT_OK


@_run
def cmd_job_cancel(args: argparse.Namespace) -> int:
    account = load_private_key(args.key_file, args.password_file)
    w3 = connect(args.rpc)
    job = w3.pouw.get_job(args.job_id)
    label = job_label(args.job_id)
    if job is None:
        raise JobCliError(f"job {label} not found on the node at {args.rpc}")
    if job.kind == "standing":
        raise JobCliError(f"job {label} is a standing job of the genesis: it cannot be cancelled")
    if job.status != "open":
        raise JobCliError(f"job {label} is {job.status}: there is nothing to cancel")
    if job.poster != account.address:
        raise JobCliError(f"job {label} was posted by {job.poster}, not by {account.address}: only its poster can cancel it")
    result = w3.pouw.cancel_job(account, args.job_id, timeout=args.timeout)
    if args.json:
        _print_json(result)
        return EXIT_OK if result.status != "failed" else EXIT_ERROR
    print(f"transaction: {_hex(result.transactionHash)}")
    if result.status == "cancelled":
        print(f"job {label}: cancelled in block {result.blockNumber}")
        print(f"refund: {ether(result.refund)} ({result.refund} wei) back to {account.address}")
        return EXIT_OK
    if result.status == "pending":
        print(f"status: pending (not mined within {args.timeout:g} s): check with pouw-node job status {label}")
        return EXIT_OK
    raise JobCliError(f"the cancellation {_hex(result.transactionHash)} failed in block {result.blockNumber}: "
                      f"{result.get('error') or 'reverted'}")


def watch_line(job: Any, history: Any) -> str:
    """One line of ``job watch``: progress, rate, ETA, latest accuracy."""
    parts = [f"job {job_label(job.id)}: {job.status}", f"{job.stepsDone}/{job.stepBudget} steps ({100 * job.progress:.1f}%)"]
    if history is not None:
        if history.get("stepsPerSecond"):
            parts.append(f"{history.stepsPerSecond:.1f} steps/s")
        eta = history.get("etaSeconds")
        if job.status == "open":
            basis = {"job": "its recent rate", "network": "network work rate"}.get(history.get("etaBasis") or "", "")
            parts.append(f"ETA {duration(eta)}" + (f" ({basis})" if basis and eta is not None else ""))
        latest = next((c for c in reversed(history.checkpoints) if c.get("accuracy") is not None), None)
        if latest is not None:
            where = f"block {latest.blockNumber}" if latest.blockNumber is not None else "initial state"
            parts.append(f"accuracy {100 * latest.accuracy:.2f}% at {where}")
    if job.kind == "posted":
        parts.append(f"fees {ether(job.feesPaid)}")
    return ", ".join(parts)


@_run
def cmd_job_watch(args: argparse.Namespace) -> int:
    import time

    w3 = connect(args.rpc)
    label = job_label(args.job_id)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    last = None
    while True:
        job = w3.pouw.get_job(args.job_id)
        if job is None:
            raise JobCliError(f"job {label} not found on the node at {args.rpc}")
        history = w3.pouw.get_job_history(args.job_id, points=args.points)
        key = (job.status, job.stepsDone, len(history.checkpoints) if history else 0)
        if key != last:
            last = key
            if args.json:
                _print_json({"job": job, "history": history})
            else:
                print(watch_line(job, history), flush=True)
        if job.status in ("completed", "cancelled"):
            return EXIT_OK
        if deadline is not None and time.monotonic() >= deadline:
            raise JobCliError(f"job {label} is still {job.status} after {args.timeout:g} s "
                              f"({job.stepsDone}/{job.stepBudget} steps)")
        time.sleep(args.interval)


@_run
def cmd_rewards(args: argparse.Namespace) -> int:
    from eth_utils import is_address, to_checksum_address

    if not is_address(args.address):
        raise JobCliError(f"not an address: {args.address!r} (expected 0x and 40 hex digits)")
    address = to_checksum_address(args.address)
    w3 = connect(args.rpc)
    rewards = w3.pouw.get_rewards(address, args.start, args.end)
    balance = w3.eth.get_balance(address)
    if args.json:
        _print_json({**rewards, "balance": balance})
        return EXIT_OK
    print(f"address: {address}")
    print(f"blocks: #{rewards.fromBlock} to #{rewards.toBlock}; {rewards.blocksMined} mined by this address")
    print(f"block rewards: {ether(rewards.blockRewards)}")
    print(f"job fees: {ether(rewards.jobFees)}")
    print(f"total: {ether(rewards.total)}")
    print(f"mature: {ether(rewards.mature)} (credited to the balance)")
    print(f"immature: {ether(rewards.immature)} (credited {rewards.coinbaseMaturity} blocks after their block)")
    print(f"balance: {ether(balance)}")
    return EXIT_OK


def _write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except OSError as exc:
        raise JobCliError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- parser ---------------------------------------------------------------------------------------

KEY_HELP = (
    "the key that signs: an encrypted keystore (pouw-node account new|import; with --password-file) or a file "
    f"holding the hex private key (chmod 600 it); without it the key is read from ${KEY_ENV}. Keys are never "
    "taken as arguments: anyone on the machine can read those in ps."
)
PASSWORD_HELP = "the keystore's password, on the first line of FILE (default: ask at the terminal)"


def _key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-file", type=Path, default=None, metavar="FILE", help=KEY_HELP)
    parser.add_argument("--password-file", type=Path, default=None, metavar="FILE", help=PASSWORD_HELP)


def _block_number(text: str) -> int:
    try:
        value = int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a block number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative block number, got {text}")
    return value


def add_rewards_command(subparsers: Any) -> argparse.ArgumentParser:
    """``pouw-node rewards ADDR``: what an address earned as a coinbase, in ETH."""
    help = "what an address earned as a coinbase: block rewards and job fees in ETH, mature and immature"
    rewards = subparsers.add_parser("rewards", help=help, description=help)
    rewards.add_argument("address", metavar="ADDR", help="the coinbase address")
    rewards.add_argument("--rpc", metavar="URL", default=DEFAULT_RPC, help=f"the node's JSON-RPC URL (default {DEFAULT_RPC})")
    rewards.add_argument("--from", dest="start", type=_block_number, default=None, metavar="N", help="first block (default 0)")
    rewards.add_argument("--to", dest="end", type=_block_number, default=None, metavar="M", help="last block (default: head)")
    rewards.add_argument("--json", action="store_true", help="print the answer as JSON (amounts in wei)")
    rewards.set_defaults(func=cmd_rewards)
    return rewards


def add_job_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``job`` and its subcommands to ``pouw-node``'s subparsers; returns the ``job`` parser."""
    from client.clitools import command_group

    job, job_commands = command_group(
        subparsers, "job", "post jobs, follow them and fetch results through a node's JSON-RPC",
        "The job market from a terminal: a client of a node's JSON-RPC (pouw_ namespace).",
    )

    def sub(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        parser = job_commands.add_parser(name, help=help, description=help)
        parser.add_argument("--rpc", metavar="URL", default=DEFAULT_RPC, help=f"the node's JSON-RPC URL (default {DEFAULT_RPC})")
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")
        parser.set_defaults(func=func)
        return parser

    submit = sub("submit", cmd_job_submit, "post a training job (signed here with your key) and wait for it to be mined")
    submit.add_argument("--spec", type=Path, required=True, metavar="FILE", help="the job spec, a JSON file (docs/protocol.md §2)")
    submit.add_argument("--price", type=_amount, required=True, metavar="WEI", help="price per training step, in wei (or 2gwei)")
    submit.add_argument("--escrow", type=_amount, default=None, metavar="WEI", help="escrow sent with the job (default steps x price; less is allowed: the job is then "
                        "trained until it runs out)")
    _key_arguments(submit)
    submit.add_argument("--dataset", type=Path, default=None, metavar="FILE",
                        help="upload this dataset file (safetensors or npz) first and set the spec's dataset to it")
    submit.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S",
                        help="seconds to wait for the posting to be mined (default 30; 0 = do not wait)")
    submit.add_argument("--yes", action="store_true", help="post without asking, whatever the escrow")
    submit.add_argument("--confirm-above", type=_amount, default=CONFIRM_ABOVE_DEFAULT, metavar="WEI",
                        help="ask before locking more than this in escrow (default 1eth; --yes skips the question)")
    submit.add_argument("--allow-untrained", action="store_true",
                        help="post even on a chain that never trains jobs (a development genesis)")

    cancel = sub("cancel", cmd_job_cancel, "cancel an open job you posted; its unused escrow comes back to you")
    cancel.add_argument("job_id", type=parse_job_id, metavar="JOB_ID", help="job id (decimal or 0x-hex)")
    _key_arguments(cancel)
    cancel.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S",
                        help="seconds to wait for the cancellation to be mined (default 30; 0 = do not wait)")

    watch = sub("watch", cmd_job_watch, "follow a job live: progress, rate, ETA, accuracy at its latest checkpoint")
    watch.add_argument("job_id", type=parse_job_id, metavar="JOB_ID", help="job id (decimal, 0x-hex or standing-N)")
    watch.add_argument("--interval", type=_positive_float, default=2.0, metavar="S", help="seconds between polls (default 2)")
    watch.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                       help="give up after S seconds (exit 1); default: until the job completes or is cancelled")
    watch.add_argument("--points", type=int, default=20, metavar="N", help=argparse.SUPPRESS)

    status = sub("status", cmd_job_status, "show a job: status, progress, escrow, fees")
    status.add_argument("job_id", type=parse_job_id, metavar="JOB_ID", help="job id (decimal, 0x-hex or standing-N)")

    list_ = sub("list", cmd_job_list, "list jobs (posted ones in id order, then the standing jobs)")
    list_.add_argument("--status", action="append", choices=["open", "completed", "cancelled", "standing"],
                       help="only jobs in this status (repeat for several)")
    list_.add_argument("--poster", metavar="ADDR", help="only jobs posted by this address")
    list_.add_argument("--from-id", type=parse_job_id, default=None, metavar="ID", help="first posted job id (paging)")
    list_.add_argument("--limit", type=int, default=None, metavar="N", help="at most N posted jobs (node default 100)")
    list_.add_argument("--no-standing", action="store_true", help="leave out the genesis standing jobs")

    result = sub("result", cmd_job_result, "download a job's model (safetensors) and print its exact metrics")
    result.add_argument("job_id", type=parse_job_id, metavar="JOB_ID", help="job id (decimal, 0x-hex or standing-N)")
    result.add_argument("--out", type=Path, required=True, metavar="FILE", help="write the model here (safetensors)")
    result.add_argument("--state-out", type=Path, default=None, metavar="FILE",
                        help="also write the canonical integer state (checked against the job's checkpoint)")
    result.add_argument("--no-check", dest="check", action="store_false",
                        help="do not load the model into the job's architecture before writing it")
    return job
