"""Faster versions of a few pure functions py-evm's execution leans on, installed for the
whole process when ``chain`` is imported (like common/keccak.py's backend choice).

Measured on an automine node building and importing blocks of plain transfers (py-spy,
bench/bench_chain.py, bench/bench_rpc.py): about a fifth of a block's time went into the
``trie`` and ``rlp`` libraries' pure-Python helpers rather than into execution itself:

* the transaction, receipt and withdrawal tries of every block were built by inserting
  one item at a time into a ``HexaryTrie`` (``eth.db.trie._make_trie_root_and_nodes``),
  about a tenth of a block. :func:`ordered_trie_root_and_nodes` builds the same trie in
  one pass over the sorted keys: the same root and the same nodes, checked against
  ``HexaryTrie`` in tests/chain/test_speedups.py (0 to 4,000 items, empty and large items);
* every trie node read from the database was decoded from RLP again, and every key's
  nibbles were made one generator step at a time. Decoded nodes are kept by their
  encoding (:func:`decode_node`, bounded), so the database is still read for every node
  (a missing node still raises ``MissingTrieNode``, py-evm's access log still sees the
  read); the nibble helpers are table lookups;
* ``rlp`` objects (headers, accounts, receipts) are copied with ``copy.deepcopy`` of every
  field, though a header or an account holds only ints and bytes: :func:`fast_copy` skips
  the deep copy for such values (anything else is still deep-copied);
* rlp's ``encode_raw`` checks every item against an ABC: :func:`encode_raw` handles bytes
  and lists or tuples of them directly and hands anything else to the original;
* py-evm's typed transactions and receipts convert their type byte through eth-utils'
  decorated ``to_bytes``/``to_int`` (~5 us a call): :func:`to_bytes` and :func:`to_int`
  answer an int directly;
* an EIP-1559 transaction (the RPC's, and every one in a block body) went through rlp's
  per-field sedes machinery: :func:`decode_dynamic_fee_payload` checks the same rules
  itself for the plain shape (28 -> 12 us) and leaves anything else to py-evm.

The node cache is shared by every trie in the process; it holds decoded copies keyed by
the exact bytes read, so it cannot answer for a node a database lacks; nodes over 1 KiB
(transaction and receipt leaves) are not kept. tests/chain/test_speedup_attacks.py fuzzes
every replacement against the original.

Each replacement returns exactly what the original returns for every input; the tests
compare them on random and edge-case inputs. ``install()`` is idempotent.
"""
from __future__ import annotations

import copy as _copy
import functools
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import eth.vm.forks.london.transactions
import eth_utils
import rlp
import rlp.codec
from eth_hash.auto import keccak

_BLANK_NODE = b""

# --- ordered tries (transactions, receipts, withdrawals) ------------------------------

_HEX_TO_NIBBLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_NIBBLE_TO_HEX = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")

TrieNode = Union[bytes, List["TrieNode"]]
"""A decoded trie node: bytes, or a list of nodes (2 items: leaf or extension, 17: branch)."""
FrozenNode = Union[bytes, Tuple["FrozenNode", ...]]


def _key_nibbles(index: int) -> bytes:
    """The trie key of item ``index`` (``rlp.encode(index)``) as a byte string of nibbles."""
    return rlp.encode(index).hex().encode().translate(_HEX_TO_NIBBLE)


def _hex_prefix(nibbles: bytes, leaf: bool) -> bytes:
    """Ethereum's hex-prefix encoding of a key path (nibbles as bytes 0..15)."""
    flag = 2 if leaf else 0
    if len(nibbles) % 2:
        flagged = bytes((flag + 1,)) + nibbles
    else:
        flagged = bytes((flag, 0)) + nibbles
    return bytes.fromhex(flagged.translate(_NIBBLE_TO_HEX).decode())


def _reference(node: List[TrieNode], nodes: Dict[bytes, bytes]) -> TrieNode:
    """How a parent refers to ``node``: the node itself if its encoding is under 32
    bytes, else its hash (the encoding stored in ``nodes``)."""
    encoded = rlp.encode(node)
    if len(encoded) < 32:
        return node
    digest = keccak(encoded)
    nodes[digest] = encoded
    return digest


def _build(items: Sequence[Tuple[bytes, bytes]], depth: int, nodes: Dict[bytes, bytes]) -> List[TrieNode]:
    """The trie node holding ``items`` (sorted by key, every key sharing its first
    ``depth`` nibbles), its children referenced and stored in ``nodes``."""
    first_key, first_value = items[0]
    if len(items) == 1:
        return [_hex_prefix(first_key[depth:], True), first_value]
    last_key = items[-1][0]
    shared = depth  # sorted keys: the first and the last share what every key shares
    limit = min(len(first_key), len(last_key))
    while shared < limit and first_key[shared] == last_key[shared]:
        shared += 1
    if shared > depth:
        child = _build(items, shared, nodes)
        return [_hex_prefix(first_key[depth:shared], False), _reference(child, nodes)]
    branch: List[TrieNode] = [_BLANK_NODE] * 17
    start = 0
    if len(first_key) == depth:  # a key ending here (sorted first): the branch's value
        branch[16] = first_value
        start = 1
    while start < len(items):
        nibble = items[start][0][depth]
        end = start + 1
        while end < len(items) and items[end][0][depth] == nibble:
            end += 1
        branch[nibble] = _reference(_build(items[start:end], depth + 1, nodes), nodes)
        start = end
    return branch


def ordered_trie_root_and_nodes(values: Tuple[bytes, ...]) -> Tuple[bytes, Dict[bytes, bytes]]:
    """Root hash and nodes (hash -> encoding) of the trie that maps ``rlp(i)`` to
    ``values[i]``: what ``eth.db.trie._make_trie_root_and_nodes`` returns, built at once.

    Empty values are not inserted (a trie cannot hold an empty value); the root is
    always stored, as ``HexaryTrie`` stores it."""
    items = sorted((_key_nibbles(i), v) for i, v in enumerate(values) if v)
    if not items:
        return keccak(rlp.encode(b"")), {}
    nodes: Dict[bytes, bytes] = {}
    encoded_root = rlp.encode(_build(items, 0, nodes))
    root = keccak(encoded_root)
    nodes[root] = encoded_root
    return root, nodes


# --- trie node decoding and nibbles ------------------------------------------------------

#: Decoded trie nodes kept, by their encoding (a branch node: about 1.5 KB decoded).
NODE_CACHE_ENTRIES = 8192
#: Larger encodings are decoded without being kept: every node of the state and storage
#: tries is below it (a branch at most ~535 bytes, an account leaf ~170), while a leaf of
#: a transaction or receipt trie holds a whole transaction (up to 128 KB) or receipt
#: (megabytes of log data): 8,192 of those would pin gigabytes.
NODE_CACHE_MAX_NODE_BYTES = 1024


class _NodeCache:
    """Decoded trie nodes by their RLP encoding, the oldest dropped first.

    Callers get a fresh copy each time: py-evm's trie edits the lists it is given."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._nodes: "OrderedDict[bytes, FrozenNode]" = OrderedDict()

    def decode(self, encoded: bytes) -> TrieNode:
        if len(encoded) > NODE_CACHE_MAX_NODE_BYTES:
            return rlp.decode(encoded)
        frozen = self._nodes.get(encoded)
        if frozen is None:
            node = rlp.decode(encoded)
            frozen = _freeze(node)
            nodes = self._nodes
            nodes[encoded] = frozen
            if len(nodes) > self.entries:
                try:
                    nodes.popitem(last=False)
                except KeyError:  # emptied by another thread meanwhile
                    pass
            return node
        return _thaw(frozen)


def _freeze(node: TrieNode) -> FrozenNode:
    if isinstance(node, list):
        return tuple(_freeze(item) for item in node)
    return node


def _thaw(frozen: FrozenNode) -> TrieNode:
    if isinstance(frozen, tuple):
        return [item if item.__class__ is bytes else _thaw(item) for item in frozen]
    return frozen


NODE_CACHE = _NodeCache(NODE_CACHE_ENTRIES)


def decode_node(encoded_node_or_hash: TrieNode) -> TrieNode:
    """``trie.utils.nodes.decode_node``, with decoded nodes kept by their encoding."""
    if encoded_node_or_hash == _BLANK_NODE:
        return _BLANK_NODE
    if isinstance(encoded_node_or_hash, list):
        return encoded_node_or_hash
    return NODE_CACHE.decode(encoded_node_or_hash)


def bytes_to_nibbles(value: bytes) -> Tuple[int, ...]:
    """``trie.utils.nibbles.bytes_to_nibbles``: the nibbles of ``value``, high first."""
    return tuple(value.hex().encode().translate(_HEX_TO_NIBBLE))


def decode_nibbles(value: bytes) -> Tuple[int, ...]:
    """``trie.utils.nibbles.decode_nibbles``: the key path a hex-prefix encoding holds
    (16 appended for a leaf's path), by the same rules for every flag nibble."""
    nibbles = bytes_to_nibbles(value)
    flag = nibbles[0]
    raw = nibbles[1:] if flag in (1, 3) else nibbles[2:]
    return raw + (16,) if flag in (2, 3) else raw


# --- RLP encoding ------------------------------------------------------------------------

_STRING_PREFIX = [bytes((0x80 + n,)) for n in range(56)]
_LIST_PREFIX = [bytes((0xC0 + n,)) for n in range(56)]
_original_encode_raw: Callable[[object], bytes] = rlp.codec.encode_raw


def encode_raw(item: object) -> bytes:
    """``rlp.codec.encode_raw`` for bytes and lists or tuples of them (what headers,
    accounts, receipts and trie nodes serialize to), without its ABC checks; anything
    else (bytearray, other sequences, what cannot be encoded) goes to the original."""
    if type(item) is bytes:
        length = len(item)
        if length == 1 and item[0] < 0x80:
            return item
        if length < 56:
            return _STRING_PREFIX[length] + item
        if length < 1 << 64:
            return rlp.codec.length_prefix(length, 0x80) + item
    elif type(item) is list or type(item) is tuple:
        payload = b"".join([encode_raw(sub) for sub in item])
        length = len(payload)
        if length < 56:
            return _LIST_PREFIX[length] + payload
        if length < 1 << 64:
            return rlp.codec.length_prefix(length, 0xC0) + payload
    return _original_encode_raw(item)


# --- rlp object copies -------------------------------------------------------------------

_IMMUTABLE = frozenset((int, bytes, str, bool, type(None)))
S = TypeVar("S", bound=rlp.Serializable)
_original_copy: Callable[..., rlp.Serializable] = rlp.Serializable.copy


def fast_copy(self: S, *args: object, **kwargs: object) -> S:
    """``rlp.Serializable.copy`` without deep-copying fields that are ints or bytes."""
    if args:
        return _original_copy(self, *args, **kwargs)
    meta = self._meta
    unknown = set(kwargs).difference(meta.field_names)
    if unknown:  # the original's error for a field the class does not have
        return _original_copy(self, *args, **kwargs)
    values: Dict[str, object] = {}
    for name, attr in zip(meta.field_names, meta.field_attrs):
        if name in kwargs:
            values[name] = kwargs[name]
        else:
            value = getattr(self, attr)
            values[name] = value if value.__class__ in _IMMUTABLE else _copy.deepcopy(value)
    return type(self)(**values)


# --- eth-utils conversions in py-evm's typed transactions and receipts ------------------

_original_to_bytes: Callable[..., bytes] = eth_utils.to_bytes
_original_to_int: Callable[..., int] = eth_utils.to_int


def to_bytes(primitive: object = None, hexstr: Optional[str] = None, text: Optional[str] = None) -> bytes:
    """``eth_utils.to_bytes``; a type byte (an int 0-255, what py-evm's typed
    transactions and receipts convert on every encoding) without its argument checking
    decorators, about 5 us a call otherwise."""
    if type(primitive) is int and 0 <= primitive < 256 and hexstr is None and text is None:
        return bytes((primitive,))
    return _original_to_bytes(primitive, hexstr, text)


def to_int(primitive: object = None, hexstr: Optional[str] = None, text: Optional[str] = None) -> int:
    """``eth_utils.to_int``; an int given as an int returned as it is (py-evm's typed
    transaction decoder reads the type byte so)."""
    if type(primitive) is int and hexstr is None and text is None:
        return primitive
    return _original_to_int(primitive, hexstr, text)


# --- decoding EIP-1559 transactions ------------------------------------------------------

_DYNAMIC_FEE_INTEGERS = (0, 1, 2, 3, 4, 6, 9, 10, 11)  # all but to (5), data (7), access list (8)
_original_dynamic_fee_decode: Callable[[bytes], object] = (
    eth.vm.forks.london.transactions.DynamicFeePayloadDecoder.decode
)


def decode_dynamic_fee_payload(payload: bytes) -> object:
    """``rlp.decode(payload, sedes=DynamicFeeTransaction)`` (py-evm's type-2 decoder,
    for the RPC's transactions and every block body), for the usual shape: twelve
    strings but an empty access list, integers without leading zeros, ``to`` empty or
    20 bytes. rlp's strict decoding of the structure still runs; its per-field sedes
    machinery (about 19 us of the 28 a transaction took) is replaced by the same checks
    written out. Anything else (an access list, a malformed field) goes to the original,
    which decodes it or raises its own error."""
    try:
        items = rlp.decode(payload)
    except rlp.exceptions.DecodingError:
        return _original_dynamic_fee_decode(payload)
    if (
        type(items) is not list or len(items) != 12 or items[8] != []
        or any(type(items[i]) is not bytes or items[i][:1] == b"\x00" for i in _DYNAMIC_FEE_INTEGERS)
        or type(items[5]) is not bytes or len(items[5]) not in (0, 20) or type(items[7]) is not bytes
    ):
        return _original_dynamic_fee_decode(payload)
    from_bytes = int.from_bytes
    tx = eth.vm.forks.london.transactions.DynamicFeeTransaction(
        from_bytes(items[0], "big"), from_bytes(items[1], "big"), from_bytes(items[2], "big"),
        from_bytes(items[3], "big"), from_bytes(items[4], "big"), items[5], from_bytes(items[6], "big"),
        items[7], (), from_bytes(items[9], "big"), from_bytes(items[10], "big"), from_bytes(items[11], "big"),
    )
    tx._cached_rlp = payload  # as rlp.decode leaves it: the encoding is the input
    return tx


# --- installation ------------------------------------------------------------------------

_installed = False


def install() -> None:
    """Put the faster functions in place of the originals, everywhere they are looked
    up (the modules that imported them by name included)."""
    global _installed
    if _installed:
        return
    import eth.db.trie
    import trie.hexary
    import trie.utils.nibbles
    import trie.utils.nodes

    # setattr: these modules' names are typed as the originals, which mypy holds to
    for module in (trie.utils.nibbles, trie.utils.nodes, trie.hexary):
        if hasattr(module, "bytes_to_nibbles"):
            setattr(module, "bytes_to_nibbles", bytes_to_nibbles)  # noqa: B010
        if hasattr(module, "decode_nibbles"):
            setattr(module, "decode_nibbles", decode_nibbles)  # noqa: B010
    setattr(trie.utils.nodes, "decode_node", decode_node)  # noqa: B010
    setattr(trie.hexary, "decode_node", decode_node)  # noqa: B010
    setattr(eth.db.trie, "_make_trie_root_and_nodes", functools.lru_cache(128)(ordered_trie_root_and_nodes))  # noqa: B010
    setattr(rlp.codec, "encode_raw", encode_raw)  # noqa: B010
    setattr(trie.hexary, "encode_raw", encode_raw)  # noqa: B010
    setattr(rlp.Serializable, "copy", fast_copy)  # noqa: B010
    import eth.vm.forks.berlin.receipts
    import eth.vm.forks.berlin.transactions
    import eth.vm.forks.cancun.transactions
    import eth.vm.forks.london.transactions
    import eth.vm.forks.prague.transactions

    setattr(eth.vm.forks.london.transactions.DynamicFeePayloadDecoder, "decode",  # noqa: B010
            staticmethod(decode_dynamic_fee_payload))
    for module in (eth.vm.forks.berlin.receipts, eth.vm.forks.berlin.transactions, eth.vm.forks.cancun.transactions,
                   eth.vm.forks.london.transactions, eth.vm.forks.prague.transactions):
        if getattr(module, "to_bytes", None) is _original_to_bytes:
            setattr(module, "to_bytes", to_bytes)  # noqa: B010
        if getattr(module, "to_int", None) is _original_to_int:
            setattr(module, "to_int", to_int)  # noqa: B010
    _installed = True
