"""Auditing from the command line: ``pouw-node run --audit`` (a background auditor in the
node) and ``pouw-node audit`` (one shot over a datadir). The auditor itself is
``consensus.auditor``; this wires it to the node's pool, RPC and p2p, and prints."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from eth_keys.datatypes import PrivateKey
from eth_utils import encode_hex

from common.errors import PouwNodeError

if TYPE_CHECKING:
    from chain.chain import Chain
    from consensus.auditor import Auditor
    from node.node import Node

log = logging.getLogger("consensus.auditor")

EXIT_FRAUD = 3
"""``pouw-node audit`` found at least one block that lies."""


class AuditRefused(PouwNodeError):
    """Auditing cannot run: no proof-of-work chain, a bad key, a bad range."""


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes, got {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"expected 1 to 256 workers, got {value}")
    return value


def add_audit_run_arguments(run: argparse.ArgumentParser) -> None:
    """``--audit`` and its options on ``pouw-node run``."""
    group = run.add_argument_group("auditing (docs/protocol.md §21)")
    group.add_argument("--audit", action="store_true",
                       help="recompute every new block in full, in the background, and prove any fraud found")
    group.add_argument("--audit-workers", type=_workers, default=1, metavar="N",
                       help="worker processes for --audit (default 1: a thread in the node)")
    group.add_argument("--audit-from", type=int, default=None, metavar="N",
                       help="first block to audit on a fresh datadir (default: the oldest block still provable, "
                            "head - coinbaseMaturity + 1)")
    group.add_argument("--audit-key-file", type=Path, default=None, metavar="FILE",
                       help="keystore (or hex key) that signs fraud proofs and collects the bounties; without it "
                            "frauds are reported, not proven")
    group.add_argument("--audit-password-file", type=Path, default=None, metavar="FILE",
                       help="password of --audit-key-file's keystore (else prompted)")


def load_prover_key(key_file: Optional[Path], password_file: Optional[Path]) -> Optional[PrivateKey]:
    if key_file is None:
        return None
    from client.keys import KeyFileError, load_signing_account

    try:
        account = load_signing_account(key_file, password_file)
    except KeyFileError as exc:
        raise AuditRefused(f"--audit-key-file: {exc}") from None
    return PrivateKey(bytes(account.key))


def check_audit_allowed(genesis: object) -> None:
    if getattr(genesis, "seal_engine", None) != "pouw":
        raise AuditRefused("--audit needs a proof-of-work chain (\"sealEngine\": \"pouw\"): this chain's blocks "
                           "carry no training to recompute")


def start_node_auditor(node: "Node", args: argparse.Namespace, key: Optional[PrivateKey]) -> "Auditor":
    """Start the background auditor of a running node; proofs go through the node's pool
    (and from there to its peers), like a transaction sent over JSON-RPC."""
    from consensus.auditor import Auditor

    backend = node.backend

    def submit(raw: bytes) -> bytes:
        return bytes(backend.submit_raw_transaction(raw).hash)

    auditor = Auditor(
        node.chain, workers=args.audit_workers, device=getattr(args, "device", "cpu") or "cpu", key=key,
        submit=submit, nonce_of=backend.pending_nonce, start_block=args.audit_from,
    )
    backend.auditor = auditor  # pouw_auditStatus, pouw_getJob's audit (rpc.sources.AuditSource)
    prover = encode_hex(key.public_key.to_canonical_address()) if key is not None else "none (report only)"
    log.info("auditing from block #%d with %d worker(s); prover %s", auditor.first, auditor.runner.workers, prover)
    return auditor.start()


# --- pouw-node audit --------------------------------------------------------------------


def add_audit_command(command: "object") -> None:
    """``pouw-node audit``: register it with the CLI's ``command`` helper."""
    audit = command(  # type: ignore[operator]
        "audit", cmd_audit,
        "recompute blocks in full and report the first step of each that does not match its listed hash "
        "(one shot, on a stopped node's datadir; a running node audits with run --audit)",
    )
    audit.add_argument("--job", type=int, default=None, metavar="ID", help="only the blocks that trained job ID")
    audit.add_argument("--from", dest="start", type=int, default=1, metavar="N", help="first block (default 1)")
    audit.add_argument("--to", dest="end", type=int, default=None, metavar="M", help="last block (default: head)")
    audit.add_argument("--workers", type=_workers, default=os.cpu_count() or 1, metavar="N",
                       help="worker processes (default: one per core)")
    audit.add_argument("--device", default="cpu", help="device to recompute on: cpu or cuda:N (default cpu)")


def blocks_to_audit(chain: "Chain", start: int, end: Optional[int], job: Optional[int]) -> Iterator[bytes]:
    from chain.header import PouwBlockHeader

    head = chain.head().block_number
    last = head if end is None else min(end, head)
    if start < 1 or start > last:
        raise AuditRefused(f"nothing to audit: --from {start} --to {last} (head #{head}; block 0 carries no work)")
    for number in range(start, last + 1):
        block_hash = chain.get_canonical_hash(number)
        header = chain.get_header_by_hash(block_hash)
        if not isinstance(header, PouwBlockHeader):
            continue
        if job is not None and int.from_bytes(header.job_id, "big") != job:
            continue
        yield bytes(block_hash)


def cmd_audit(args: argparse.Namespace) -> int:
    from consensus.auditor import AuditRunner, record_finding
    from node.node import open_datadir, read_datadir_genesis

    check_audit_allowed(read_datadir_genesis(args.datadir))
    with open_datadir(args.datadir) as datadir:
        chain = datadir.chain
        hashes = list(blocks_to_audit(chain, args.start, args.end, args.job))
        if not hashes:
            print("no block to audit" + (f" trained job {args.job}" if args.job is not None else ""))
            return 0
        runner = AuditRunner(chain, workers=min(args.workers, len(hashes)), device=args.device)
        frauds = steps = 0
        seconds = 0.0
        try:
            batch = 4 * runner.workers
            for i in range(0, len(hashes), batch):
                for audit in runner.audit(hashes[i:i + batch]):
                    steps += audit.steps
                    seconds += audit.seconds
                    if audit.honest:
                        print(f"block #{audit.number} {encode_hex(audit.block_hash)} job {audit.job_id}: honest "
                              f"({audit.steps} steps, {audit.segments} segments, {audit.seconds:.2f} s)")
                        continue
                    frauds += 1
                    found = record_finding(chain, audit)
                    print(f"block #{found.number} {encode_hex(found.block_hash)} job {found.job_id}: FRAUD at "
                          f"segment {found.segment} (steps {found.first_step}..{found.last_step}): the recomputed "
                          f"state does not hash to the listed one; prove it with proveFraud("
                          f"{encode_hex(found.block_hash)}, {found.segment}) (start state "
                          f"{encode_hex(found.start_state_hash)} stored in this datadir)")
        finally:
            runner.close()
    rate = steps / seconds if seconds else 0.0
    print(f"audited {len(hashes)} blocks, {steps} steps ({rate:.0f} steps/s per worker, {runner.workers} workers): "
          f"{frauds} fraud{'s' if frauds != 1 else ''}")
    return EXIT_FRAUD if frauds else 0


__all__ = ["AuditRefused", "EXIT_FRAUD", "add_audit_command", "add_audit_run_arguments", "check_audit_allowed",
           "cmd_audit", "load_prover_key", "start_node_auditor"]
