"""Gossip: blocks and transactions reach every node of a small network; alone, the part
announces each head once per peer, batches transactions by what each peer has seen,
and makes a peer pay for junk."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator, Optional

import pytest
from eth.abc import BlockAPI
from eth_hash.auto import keccak

from p2p import messages as m
from p2p.config import P2PConfig
from p2p.errors import MalformedMessage
from p2p.gossip import ANNOUNCED_QUEUE, TX_BATCH_CHARS, Gossip, tx_batches
from p2p.interfaces import ReadPool
from p2p.peer import BoundedSet
from p2p.peerset import PeerSet
from p2p.scoring import PENALTY_BAD_TX
from tests.chain.helpers import ALICE, BOB, address_of, transfer
from tests.p2p.helpers import TestNode, block_rlp, converged, wait_for
from tests.p2p.stubs import Script, StubPeer


@pytest.mark.asyncio
async def test_block_gossip_converges_on_a_line(make_node) -> None:
    # a - b - c - d: blocks from a must travel through b and c.
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    c = await make_node("c").start([b])
    d = await make_node("d").start([c])
    await wait_for(lambda: all(len(n.p2p.peers) >= 1 for n in (a, b, c, d)) and len(b.p2p.peers) == 2
                   and len(c.p2p.peers) == 2, what="line topology")
    for _ in range(5):
        await a.mine(1)
    head = await converged([a, b, c, d])
    assert head == bytes(a.head().hash) and d.number == 5
    await d.mine(2)  # and back the other way
    await converged([a, b, c, d])
    assert a.number == 7


@pytest.mark.asyncio
async def test_tx_gossip_reaches_every_pool_and_gets_mined(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    c = await make_node("c").start([b])
    await wait_for(lambda: len(b.p2p.peers) == 2, what="peers")
    tx = transfer(ALICE, 0, address_of(BOB), 12345)
    a.backend.submit_raw_transaction(tx.encode())  # as eth_sendRawTransaction does
    await wait_for(lambda: c.chain.txpool.get(tx.hash) is not None, what="tx at c")
    assert b.chain.txpool.get(tx.hash) is not None
    # c mines it (transactions from its pool); the block reaches a, whose pool drops it.
    await c.mine(1, txs_per_block=lambda i: c.chain.txpool.pending())
    await converged([a, b, c])
    assert a.chain.get_transaction_by_hash(tx.hash) is not None
    # The pool hears of the new head just after the head moves (same import, other thread).
    await wait_for(lambda: a.chain.txpool.get(tx.hash) is None, timeout=5, what="a's pool to drop the mined tx")


# --- the part alone: Gossip over a real chain, stub peers, no sockets -------------------


ImportHook = Callable[[StubPeer, bytes, Optional[bytes]], Awaitable[None]]


@contextmanager
def gossip_for(
    node: TestNode, peers: list[StubPeer], *, import_block: Optional[ImportHook] = None,
    submit_tx: Callable[[bytes], object] = lambda raw: None, want_sync: Callable[[], None] = lambda: None,
    fetch_blob: Optional[Callable[[bytes], Awaitable[bytes]]] = None,
) -> Iterator[Gossip]:
    """A Gossip over ``node``'s chain and ``peers``, its read pool shut down on leaving;
    without ``import_block`` an import fails the test (as a logged error of the fetcher:
    the assertions on what was imported catch it)."""
    peer_set = PeerSet(P2PConfig())
    for peer in peers:
        peer_set.add(peer)  # type: ignore[arg-type]
    reads = ReadPool()

    async def no_import(peer: StubPeer, block_rlp: bytes, payload: Optional[bytes]) -> None:
        raise AssertionError("no import expected")

    gossip = Gossip(
        node.chain, P2PConfig(gossip_delay_s=0.01), peer_set, reads,
        import_block=import_block or no_import,  # type: ignore[arg-type]
        submit_tx=submit_tx, want_sync=want_sync, fetch_blob=fetch_blob,
    )
    try:
        yield gossip
    finally:
        reads.shutdown()


def test_seen_set_keeps_the_most_recent_hashes() -> None:
    seen = BoundedSet(3)
    for item in (b"a", b"b", b"c"):
        seen.add(item)
    seen.add(b"b")  # seen again: now the most recent
    seen.add(b"d")  # evicts the oldest, a
    assert b"a" not in seen and all(x in seen for x in (b"b", b"c", b"d"))
    seen.add(b"e")  # then c, not the refreshed b
    assert b"c" not in seen and all(x in seen for x in (b"b", b"d", b"e"))


def test_tx_batches_skip_what_the_peer_has_seen_and_split_by_count_and_size() -> None:
    raws = [(bytes([i]) * 32, bytes([i]) * 100) for i in range(m.MAX_TXS + 6)]
    known = BoundedSet(1000)
    known.add(raws[0][0])
    batches = list(tx_batches(known, raws))
    assert [len(b) for b in batches] == [m.MAX_TXS, 5]  # one already seen, the rest in two messages
    assert batches[0][0] == m.hx(raws[1][1])
    assert all(tx_hash in known for tx_hash, _ in raws)
    assert list(tx_batches(known, raws)) == []  # all seen now: nothing sent twice
    big = [(bytes([i]) * 32, bytes([i]) * (TX_BATCH_CHARS // 4)) for i in range(5)]  # half a batch each in hex
    assert [len(b) for b in tx_batches(BoundedSet(10), big)] == [2, 2, 1]


@pytest.mark.asyncio
async def test_head_is_announced_once_to_each_peer_that_lacks_it(make_node) -> None:
    node = make_node("a")
    await node.mine(2)
    head = node.head()
    knows, lacks = StubPeer("knows"), StubPeer("lacks")
    knows.known_blocks.add(bytes(head.hash))
    with gossip_for(node, [knows, lacks]) as gossip:
        gossip.local_head(bytes(head.hash))
        await gossip.flush()
        assert knows.sent == [] and lacks.sent == [
            ("new_block", {"hash": m.hx(head.hash), "number": 2, "total_work": m.qty(node.work())})
        ]
        gossip.local_head(bytes(head.hash))
        await gossip.flush()
        assert len(lacks.sent) == 1  # the peer is known to have it now


@pytest.mark.asyncio
async def test_an_older_head_event_arriving_last_still_announces_the_newest_head(make_node) -> None:
    """A block imported by a sync round is published from that round, and may reach the
    gossip after a block mined meanwhile on top of it (seen in CI: a line of four nodes
    left at #5 while the far end held #7): the flush announces the chain's head."""
    node = make_node("a")
    await node.mine(2)
    head = node.head()
    peer = StubPeer("p")
    with gossip_for(node, [peer]) as gossip:
        gossip.local_head(bytes(head.hash))
        gossip.local_head(bytes(node.chain.get_canonical_hash(1)))  # the older event, last
        await gossip.flush()
        assert peer.sent == [("new_block", {"hash": m.hx(head.hash), "number": 2, "total_work": m.qty(node.work())})]


@pytest.mark.asyncio
async def test_gossiped_txs_reach_the_pool_and_undecodable_ones_cost_the_peer(make_node) -> None:
    node = make_node("a")
    submitted: list[bytes] = []
    peer = StubPeer("p")
    good = transfer(ALICE, 0, address_of(BOB), 1).encode()
    with gossip_for(node, [peer], submit_tx=submitted.append) as gossip:
        gossip.on_txs(peer, {"txs": [m.hx(good), "0xc0", "0xdeadbeef"]})
        await wait_for(lambda: gossip.peers.score(peer) < 0, timeout=5, what="the penalty")
        assert submitted == [good]
        assert gossip.peers.score(peer) == -2 * PENALTY_BAD_TX
        assert keccak(good) in peer.known_txs  # not pushed back to the peer that sent it


@pytest.mark.asyncio
async def test_invalid_oversized_gossiped_tx_is_refused_before_decoding(make_node) -> None:
    node = make_node("a")
    huge = "0x" + "00" * (node.chain.genesis.max_transaction_bytes + 1)
    with gossip_for(node, []) as gossip:
        with pytest.raises(MalformedMessage):
            gossip.on_txs(StubPeer("p"), {"txs": [huge]})


@pytest.mark.asyncio
async def test_announcements_beyond_the_queue_ask_for_a_sync(make_node) -> None:
    node = make_node("a")
    syncs: list[None] = []
    peer = StubPeer("p")
    ours = node.work()
    with gossip_for(node, [peer], want_sync=lambda: syncs.append(None)) as gossip:
        for i in range(ANNOUNCED_QUEUE + 1):  # lighter than our head: not wanted at all
            gossip.on_new_block(peer, {"hash": m.hx(i.to_bytes(32, "big")), "number": 1, "total_work": m.qty(ours)})
        assert syncs == []
        for i in range(ANNOUNCED_QUEUE + 1):
            gossip.on_new_block(peer, {"hash": m.hx(i.to_bytes(32, "big")), "number": 9, "total_work": m.qty(ours + i + 1)})
        assert syncs == [None]  # the queue is full: a sync catches up instead
        assert peer.total_work == ours + ANNOUNCED_QUEUE + 1 and peer.head_number == 9


@pytest.mark.asyncio
async def test_announced_block_is_fetched_and_a_wrong_answer_is_a_violation(make_node) -> None:
    source = make_node("source")
    blocks = await source.mine(2)
    node = make_node("a")
    imported: list[bytes] = []

    async def import_block(peer: StubPeer, block_rlp_: bytes, payload: Optional[bytes]) -> None:
        imported.append(block_rlp_)

    def answer_with(block: BlockAPI) -> Script:
        return lambda type_, body: m.Message("blocks", {"id": 1, "blocks": [[m.hx(block_rlp(block)), None]]})

    honest = StubPeer("honest", answer=answer_with(blocks[0]))
    liar = StubPeer("liar", answer=answer_with(blocks[1]))  # asked for block 1, sends block 2
    work = source.work()
    with gossip_for(node, [honest, liar], import_block=import_block) as gossip:
        gossip.start()
        try:
            for peer in (liar, honest):
                gossip.on_new_block(peer, {"hash": m.hx(blocks[0].hash), "number": 1, "total_work": m.qty(work)})
            await wait_for(lambda: bool(imported and liar.violations), timeout=5, what="both announcements handled")
            assert imported == [block_rlp(blocks[0])]
            assert "another block" in str(liar.violations[0]) and not honest.violations
        finally:
            await asyncio.gather(*gossip.cancel(), return_exceptions=True)


@pytest.mark.asyncio
async def test_a_peer_naming_blobs_nobody_has_costs_one_fetch_each_and_bounded_memory(make_node) -> None:
    """Transactions refused for a blob (fraud proofs naming a start state) make the node
    fetch it; a peer flooding them with blobs nobody serves gets each blob tried once per
    TX_BLOB_RETRY_S, at most TX_BLOB_FETCHES per message, and at most TX_BLOBS_WAITING
    blobs kept waiting."""
    from chain.txpool import BlobNotHere
    from p2p.gossip import TX_BLOB_FETCHES, TX_BLOBS_WAITING
    from rpc.backend import TransactionRejected

    node = make_node("a")
    peer = StubPeer("flooder")
    fetches: list[bytes] = []

    async def nobody_has(blob_hash: bytes) -> bytes:
        fetches.append(blob_hash)
        raise LookupError("no peer served it")

    def refuse(raw: bytes) -> None:
        raise TransactionRejected("blob missing", refusal=BlobNotHere(blob_hash=keccak(raw)))

    raws = [transfer(ALICE, nonce, address_of(BOB), 1).encode() for nonce in range(100)]
    messages = [raws[i:i + 5] for i in range(0, len(raws), 5)]
    with gossip_for(node, [peer], submit_tx=refuse, fetch_blob=nobody_has) as gossip:
        for batch in messages:
            gossip.on_txs(peer, {"txs": [m.hx(raw) for raw in batch]})
        await wait_for(lambda: len(fetches) == len(messages) * TX_BLOB_FETCHES, timeout=10, what="the fetches")
        assert len(set(fetches)) == len(fetches), "each blob fetched once"
        assert len(gossip._blob_waits) <= TX_BLOBS_WAITING
        for batch in messages:  # the same again, within the retry delay: nothing fetched
            gossip.on_txs(peer, {"txs": [m.hx(raw) for raw in batch]})
        await asyncio.sleep(0.5)
        assert len(fetches) == len(messages) * TX_BLOB_FETCHES
        assert len(gossip._blob_waits) <= TX_BLOBS_WAITING


@pytest.mark.asyncio
async def test_a_new_peer_hears_of_a_head_that_moved_during_the_handshake(make_node) -> None:
    """A block mined while a peer's handshake is under way is announced to the peers of
    that moment only; the greeting after the handshake announces it to the newcomer
    (unless the hello we sent already named it)."""
    node = make_node("a")
    await node.mine(2)
    head = node.head()
    stale, current = StubPeer("hello named block 1"), StubPeer("hello named the head")
    stale.known_blocks.add(bytes(node.chain.get_canonical_hash(1)))
    current.known_blocks.add(bytes(head.hash))
    with gossip_for(node, [stale, current]) as gossip:
        gossip.start()
        try:
            for peer in (stale, current):
                gossip.greet(peer)  # type: ignore[arg-type]
            await wait_for(lambda: bool(stale.sent), timeout=5, what="the greeting")
            await asyncio.sleep(0.05)
            announced = {"hash": m.hx(head.hash), "number": 2, "total_work": m.qty(node.work())}
            assert stale.sent == [("new_block", announced)] and current.sent == []
        finally:
            await asyncio.gather(*gossip.cancel(), return_exceptions=True)


@pytest.mark.asyncio
async def test_a_fetch_that_times_out_asks_for_a_sync(make_node) -> None:
    """The peer that announced a heavier block does not answer for it: the sync round
    (which asks the heaviest peer, and keeps asking) takes over; the block is not lost."""
    from p2p.errors import PeerUnavailable

    node = make_node("a")
    syncs: list[None] = []
    silent = StubPeer("silent", answer=lambda type_, body: PeerUnavailable("get_blocks timed out"))
    with gossip_for(node, [silent], want_sync=lambda: syncs.append(None)) as gossip:
        gossip.start()
        try:
            gossip.on_new_block(silent, {"hash": m.hx(b"\x07" * 32), "number": 1, "total_work": m.qty(node.work() + 1)})
            await wait_for(lambda: bool(syncs), timeout=5, what="a sync request")
            assert silent.requests[0][0] == "get_blocks" and not silent.violations
        finally:
            await asyncio.gather(*gossip.cancel(), return_exceptions=True)
