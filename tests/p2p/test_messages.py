"""The wire format and the building blocks of sync and scoring, without sockets."""
from __future__ import annotations

import pytest

from p2p import messages as m
from p2p.config import PeerAddress
from p2p.errors import MalformedMessage, OversizedMessage
from p2p.peer import Hello
from p2p.scoring import PeerBook, TokenBucket
from p2p.sync import build_locator, fork_point, header_hash_of, read_segment
from tests.chain.helpers import mine, open_chain, with_header
from tests.p2p.helpers import block_rlp


def test_encode_decode_round_trip() -> None:
    frame = m.encode("new_block", hash=m.hx(b"\x01" * 32), number=7, total_work=m.qty(10**30))
    msg = m.decode(frame, 1 << 20)
    assert msg.type == "new_block" and msg.kind == "notice"
    assert m.field_hash(msg.body, "hash") == b"\x01" * 32
    assert m.field_int(msg.body, "number") == 7
    assert m.field_qty(msg.body, "total_work") == 10**30


def test_hello_round_trip() -> None:
    hello = Hello(1, 7357, b"\x02" * 32, b"\x03" * 32, 5, 123, b"\x04" * 16, 30303, "x")
    assert Hello.parse(m.decode(hello.encode(), 4096).body) == hello


def test_invalid_size_is_checked_before_json() -> None:
    # Not JSON at all, but too long for its type: refused as oversized, never parsed.
    with pytest.raises(OversizedMessage):
        m.decode("new_block " + "{" * 2000, 1 << 20)
    with pytest.raises(OversizedMessage):  # the connection limit applies to every type
        m.decode("blocks " + " " * 200, 100)


def test_invalid_deeply_nested_body_is_refused_before_parsing() -> None:
    """The frame that segfaulted a node (issue 12): refused as malformed, nothing parsed."""
    with pytest.raises(MalformedMessage, match="nested deeper"):
        m.decode("txs " + "[" * 100_000, 1 << 20)
    with pytest.raises(MalformedMessage, match="nested deeper"):
        m.decode("blocks " + '{"id":1,"blocks":' + "[" * 9 + "]" * 9 + "}", 1 << 20)
    assert m.decode('blocks {"id":1,"blocks":[["0x00",null]]}', 1 << 20).body["id"] == 1


@pytest.mark.parametrize("frame", ["", "new_block", "NEW_BLOCK {}", "new_block {", "new_block 1", "txs []"])
def test_invalid_frames(frame: str) -> None:
    with pytest.raises(MalformedMessage):
        m.decode(frame, 1 << 20)


@pytest.mark.parametrize(
    "body, call",
    [
        ({"h": "01"}, lambda b: m.field_hash(b, "h")),
        ({"h": "0x" + "00" * 31}, lambda b: m.field_hash(b, "h")),
        ({"h": "0xgg"}, lambda b: m.field_bytes(b, "h")),
        ({"n": -1}, lambda b: m.field_int(b, "n")),
        ({"n": True}, lambda b: m.field_int(b, "n")),
        ({"n": 1.5}, lambda b: m.field_int(b, "n")),
        ({"q": 5}, lambda b: m.field_qty(b, "q")),
        ({"q": "0x" + "f" * 65}, lambda b: m.field_qty(b, "q")),
        ({"l": ["0x" + "00" * 32] * 65}, lambda b: m.field_hashes(b, "l")),
        ({"blocks": [["0x00"]]}, lambda b: m.parse_block_entries(b, max_len=4, max_block=10, max_payload=10)),
        ({"blocks": [["0x" + "00" * 11, None]]}, lambda b: m.parse_block_entries(b, max_len=4, max_block=10, max_payload=10)),
    ],
)
def test_invalid_fields(body, call) -> None:
    with pytest.raises(MalformedMessage):
        call(body)


def test_peer_address_parse() -> None:
    assert PeerAddress.parse("127.0.0.1:30303") == PeerAddress("127.0.0.1", 30303)
    assert PeerAddress.parse("[::1]:1") == PeerAddress("::1", 1)
    for bad in ("localhost", ":30303", "host:0", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            PeerAddress.parse(bad)


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert all(bucket.take() for _ in range(5)) and not bucket.take()
    now[0] += 0.2
    assert bucket.take() and bucket.take() and not bucket.take()


def test_peer_book_bans_and_expires() -> None:
    now = [0.0]
    book = PeerBook(ban_score=-100, ban_seconds=60, clock=lambda: now[0])
    keys = ("node:aa", "addr:127.0.0.1:1")
    assert not book.penalise(keys, 60, "x")
    assert book.penalise(keys, 40, "y")
    assert book.banned(("addr:127.0.0.1:1",)) == "y"  # either identity is enough
    now[0] += 61
    assert book.banned(keys) is None
    assert book.penalise(keys, 50, "again")  # after a ban, one more offence bans again


def test_address_strikes_ban_an_address_whatever_the_node_id() -> None:
    """Invalid blocks count against the remote IP under any node id: the third within
    the window bans the address; each later ban lasts twice as long; static peers'
    addresses are never banned as a whole; old strikes leave the window."""
    from p2p.scoring import AddressStrikes

    now = [0.0]
    strikes = AddressStrikes(3, window_s=3600, ban_seconds=600, exempt={"127.0.0.1"}, clock=lambda: now[0])
    assert strikes.strike("10.0.0.9", "invalid block 1") is None
    now[0] += 4000  # the first strike has left the window
    assert strikes.strike("10.0.0.9", "invalid block 2") is None
    assert strikes.strike("10.0.0.9", "invalid block 3") is None
    assert strikes.banned("10.0.0.9") is None
    assert strikes.strike("10.0.0.9", "invalid block 4") == 600
    assert "3 invalid blocks or blobs from 10.0.0.9" in (strikes.banned("10.0.0.9") or "")
    assert strikes.banned("10.0.0.8") is None  # another address is not touched
    now[0] += 601
    assert strikes.banned("10.0.0.9") is None
    for i in range(3):
        length = strikes.strike("10.0.0.9", f"again {i}")
    assert length == 1200  # a second ban: twice as long
    for _ in range(10):
        assert strikes.strike("127.0.0.1", "a static peer's address") is None
    assert strikes.banned("127.0.0.1") is None


def test_locator_and_fork_point() -> None:
    chain = open_chain()
    blocks = [mine(chain) for _ in range(40)]
    locator = build_locator(chain)
    assert locator[0] == blocks[-1].hash and locator[-1] == chain.genesis_hash
    assert len(locator) < 20  # 10 dense, then doubling
    other = open_chain()
    for block in blocks[:25]:
        other.import_block(block)
    fork = mine(other, extra_data=b"fork")  # other diverges after block 25
    assert fork_point(chain, build_locator(other)) == 25
    assert fork_point(chain, [b"\x09" * 32]) == 0  # nothing known: from genesis
    segment = read_segment(chain, build_locator(other), max_blocks=10, budget=1 << 20)
    assert [header_hash_of(b) for b, _ in segment] == [b.hash for b in blocks[25:35]]
    assert len(read_segment(chain, build_locator(other), max_blocks=10, budget=1)) == 1  # budget: >= 1 block


def test_invalid_block_bytes_have_no_hash() -> None:
    chain = open_chain()
    block = mine(chain)
    assert header_hash_of(block_rlp(block)) == block.hash
    assert header_hash_of(block_rlp(with_header(block, gas_used=1))) != block.hash
    for junk in (b"", b"\x01", b"\xc0", b"\xc1\x80"):
        with pytest.raises(ValueError):
            header_hash_of(junk)
