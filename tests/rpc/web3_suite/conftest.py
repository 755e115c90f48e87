"""web3.py 8's own node test classes against a real dev node, with client-side signing.

The fixtures are those of web3.py's geth integration suite (tests/integration/...),
built the same way on whichever node runs: the keyfile account is funded, the test
contracts are deployed, a transaction with a log, reverting transactions, a plain
transfer and an empty block are mined. The account's key is never given to the node:
web3's ``SignAndSendRawMiddlewareBuilder`` signs each ``eth_sendTransaction`` in the
client and sends it raw.

Environment:

- ``WEB3_SUITE_NODE``: ``pouw`` (default; ``pouw-node run`` on a dev genesis) or
  ``anvil`` (needs ``anvil`` on PATH or ``npm install @foundry-rs/anvil-linux-amd64``);
- ``WEB3_SUITE_MODE``: ``automine`` (default) or ``interval`` (a block a second:
  ``--dev-period 1`` / ``anvil --block-time 1``);
- ``WEB3_SUITE_RAW=1``: do not mark the known failures (known_failures.py) as xfail,
  to count raw results (scripts/web3_suite.py does, for both nodes).

Both nodes run with web3.py's fixture chain id, 131277322940537 (``web3py`` as an
integer), which the chain-id tests expect.
"""
from __future__ import annotations

import os
import time
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_asyncio
from eth_account import Account
from eth_utils import is_dict, to_checksum_address
from web3 import AsyncWeb3, Web3
from web3._utils.contract_sources.contract_data._custom_contract_data import EMITTER_ENUM
from web3._utils.contract_sources.contract_data.emitter_contract import EMITTER_CONTRACT_DATA
from web3._utils.contract_sources.contract_data.math_contract import MATH_CONTRACT_DATA
from web3._utils.contract_sources.contract_data.offchain_lookup import OFFCHAIN_LOOKUP_ABI, OFFCHAIN_LOOKUP_BYTECODE
from web3._utils.contract_sources.contract_data.panic_errors_contract import PANIC_ERRORS_CONTRACT_DATA
from web3._utils.contract_sources.contract_data.revert_contract import REVERT_CONTRACT_DATA
from web3._utils.contract_sources.contract_data.storage_contract import STORAGE_CONTRACT_DATA
from web3._utils.module_testing.utils import RequestMocker
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.providers.rpc import AsyncHTTPProvider

from tests.rpc.devnode import DevNode, dev_genesis, find_anvil, start_anvil, start_pouw
from tests.rpc.web3_suite.known_failures import known_failure

#: web3.py's fixture chain id ("web3py" as an integer) and keyfile account (public test key).
CHAIN_ID = 131277322940537
KEYFILE_ACCOUNT_PKEY = "0x58d23b55bc9cdce1f18c2500f40ff4ab7245df9a89505e9b1fa4851f623d241d"
KEYFILE_ACCOUNT = Account.from_key(KEYFILE_ACCOUNT_PKEY)
RAW_TXN_ACCOUNT = "0x39EEed73fb1D3855E90Cbd42f348b3D7b340aAA6"
#: First key of the public test mnemonic: funded by anvil and by genesis/dev.json.
FUNDER = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")

NODE = os.environ.get("WEB3_SUITE_NODE", "pouw")
MODE = os.environ.get("WEB3_SUITE_MODE", "automine")
RAW = os.environ.get("WEB3_SUITE_RAW") == "1"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Known failures (with their reasons) become xfail on our node, unless WEB3_SUITE_RAW."""
    if RAW or NODE != "pouw":
        return
    for item in items:
        if "web3_suite" not in item.nodeid:
            continue
        reason = known_failure(item.originalname if hasattr(item, "originalname") else item.name, MODE)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.fixture(scope="session")
def dev_node() -> Iterator[DevNode]:
    if NODE == "anvil":
        binary = find_anvil()
        if binary is None:
            pytest.skip("anvil not available (npm install @foundry-rs/anvil-linux-amd64)")
        node = start_anvil(binary, MODE, chain_id=CHAIN_ID)
    else:
        node = start_pouw(MODE, dev_genesis(CHAIN_ID), args=("--dev-accounts",))  # as anvil: its dev accounts unlocked
    try:
        yield node
    finally:
        node.stop()


def _signing_w3(url: str) -> Web3:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(KEYFILE_ACCOUNT), layer=0)
    return w3


def _receipt(w3: Web3, tx_hash: Any) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)
    return receipt


def _deploy(w3: Web3, factory: Any) -> Any:
    receipt = _receipt(w3, factory.constructor().transact({"from": KEYFILE_ACCOUNT.address}))
    assert receipt.status == 1 and receipt.contractAddress
    return receipt


@pytest.fixture(scope="session")
def chain_state(dev_node: DevNode) -> dict[str, Any]:
    """web3.py's generate_fixtures/go_ethereum.py setup_chain_state, client-side signed."""
    w3 = _signing_w3(dev_node.url)
    funder = Web3(Web3.HTTPProvider(dev_node.url))
    nonce = funder.eth.get_transaction_count(FUNDER.address, "pending")
    hashes = []
    for i, to in enumerate((KEYFILE_ACCOUNT.address, RAW_TXN_ACCOUNT)):
        tx = {"to": to, "value": 1000 * 10**18, "gas": 21000, "nonce": nonce + i, "chainId": CHAIN_ID,
              "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9}
        hashes.append(funder.eth.send_raw_transaction(FUNDER.sign_transaction(tx).raw_transaction))
    for tx_hash in hashes:
        _receipt(funder, tx_hash)
    sender = {"from": KEYFILE_ACCOUNT.address}
    state: dict[str, Any] = {}
    math = _deploy(w3, w3.eth.contract(**MATH_CONTRACT_DATA))
    state.update(math_deploy_txn_hash=math.transactionHash, math_address=math.contractAddress)
    emitter_receipt = _deploy(w3, w3.eth.contract(**EMITTER_CONTRACT_DATA))
    state["emitter_address"] = emitter_receipt.contractAddress
    emitter = w3.eth.contract(address=emitter_receipt.contractAddress, **EMITTER_CONTRACT_DATA)
    with_log = _receipt(w3, emitter.functions.logDouble(
        which=EMITTER_ENUM["LogDoubleWithIndex"], arg0=12345, arg1=54321).transact(sender))
    state.update(txn_hash_with_log=with_log.transactionHash, block_hash_with_log=with_log.blockHash)
    revert_receipt = _deploy(w3, w3.eth.contract(**REVERT_CONTRACT_DATA))
    state["revert_address"] = revert_receipt.contractAddress
    revert = w3.eth.contract(address=revert_receipt.contractAddress, **REVERT_CONTRACT_DATA)
    gas = {"gas": 320000, **sender}
    _receipt(w3, revert.functions.normalFunction().transact(gas))
    state["block_hash_revert_with_msg"] = _receipt(w3, revert.functions.revertWithMessage().transact(gas)).blockHash
    state["block_hash_revert_no_msg"] = _receipt(w3, revert.functions.revertWithoutMessage().transact(gas)).blockHash
    offchain = _deploy(w3, w3.eth.contract(abi=OFFCHAIN_LOOKUP_ABI, bytecode=OFFCHAIN_LOOKUP_BYTECODE))
    state["offchain_lookup_address"] = offchain.contractAddress
    state["panic_errors_contract_address"] = _deploy(w3, w3.eth.contract(**PANIC_ERRORS_CONTRACT_DATA)).contractAddress
    state["storage_contract_address"] = _deploy(w3, w3.eth.contract(**STORAGE_CONTRACT_DATA)).contractAddress
    state["empty_block_hash"] = _empty_block_hash(w3)
    mined = w3.eth.send_transaction(
        {"from": KEYFILE_ACCOUNT.address, "to": KEYFILE_ACCOUNT.address, "value": 1, "gas": 21000,
         "gasPrice": w3.eth.gas_price}
    )
    receipt = _receipt(w3, mined)
    state.update(mined_txn_hash=mined, block_with_txn_hash=receipt.blockHash)
    return {key: (value.to_0x_hex() if hasattr(value, "to_0x_hex") else value) for key, value in state.items()}


def _empty_block_hash(w3: Web3) -> Any:
    """Automine builds no empty block: the genesis is the empty block. With a block a
    second, the first block without transactions after the deployments."""
    if MODE == "automine":
        return w3.eth.get_block(0)["hash"]
    deadline = time.time() + 30
    start = w3.eth.block_number
    while time.time() < deadline:
        number = w3.eth.block_number
        for n in range(start + 1, number + 1):
            block = w3.eth.get_block(n)
            if not block["transactions"]:
                return block["hash"]
        start = max(start, number)
        time.sleep(0.2)
    raise AssertionError("no empty block within 30 s")


# -- the fixtures web3.py's module test classes ask for ---------------------------------

@pytest.fixture
def w3(dev_node: DevNode, chain_state: dict[str, Any]) -> Web3:
    return _signing_w3(dev_node.url)


@pytest_asyncio.fixture
async def async_w3(dev_node: DevNode, chain_state: dict[str, Any]) -> AsyncIterator[AsyncWeb3]:
    w3 = AsyncWeb3(AsyncHTTPProvider(dev_node.url))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(KEYFILE_ACCOUNT), layer=0)
    yield w3
    await w3.provider.disconnect()


@pytest.fixture
def address_conversion_func() -> Any:
    return to_checksum_address


@pytest.fixture
def request_mocker() -> type[RequestMocker]:
    return RequestMocker


@pytest.fixture
def skip_if_testrpc() -> Any:
    return lambda w3: None


@pytest.fixture
def async_skip_if_testrpc() -> Any:
    return lambda w3: None


@pytest.fixture
def keyfile_account_pkey() -> str:
    return KEYFILE_ACCOUNT_PKEY


@pytest.fixture
def keyfile_account_address() -> str:
    return KEYFILE_ACCOUNT.address


@pytest.fixture
def keyfile_account_address_dual_type() -> str:
    return KEYFILE_ACCOUNT.address


@pytest.fixture
def async_keyfile_account_address() -> str:
    return KEYFILE_ACCOUNT.address


@pytest.fixture
def async_keyfile_account_address_dual_type() -> str:
    return KEYFILE_ACCOUNT.address


def _contract(w3: Any, address: str, contract_data: dict[str, Any]) -> Any:
    return w3.eth.contract(address=address, **contract_data)


@pytest.fixture
def math_contract_deploy_txn_hash(chain_state: dict[str, Any]) -> str:
    return str(chain_state["math_deploy_txn_hash"])


@pytest.fixture
def math_contract(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _contract(w3, chain_state["math_address"], MATH_CONTRACT_DATA)


@pytest.fixture
def math_contract_address(math_contract: Any) -> str:
    return str(math_contract.address)


@pytest.fixture
def async_math_contract(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return _contract(async_w3, chain_state["math_address"], MATH_CONTRACT_DATA)


@pytest.fixture
def async_math_contract_address(async_math_contract: Any) -> str:
    return str(async_math_contract.address)


@pytest.fixture
def emitter_contract(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _contract(w3, chain_state["emitter_address"], EMITTER_CONTRACT_DATA)


@pytest.fixture
def emitter_contract_address(emitter_contract: Any) -> str:
    return str(emitter_contract.address)


@pytest.fixture
def async_emitter_contract(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return _contract(async_w3, chain_state["emitter_address"], EMITTER_CONTRACT_DATA)


@pytest.fixture
def async_emitter_contract_address(async_emitter_contract: Any) -> str:
    return str(async_emitter_contract.address)


@pytest.fixture
def revert_contract(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _contract(w3, chain_state["revert_address"], REVERT_CONTRACT_DATA)


@pytest.fixture
def async_revert_contract(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return _contract(async_w3, chain_state["revert_address"], REVERT_CONTRACT_DATA)


@pytest.fixture
def offchain_lookup_contract(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return w3.eth.contract(address=chain_state["offchain_lookup_address"], abi=OFFCHAIN_LOOKUP_ABI,
                           bytecode=OFFCHAIN_LOOKUP_BYTECODE)


@pytest.fixture
def async_offchain_lookup_contract(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return async_w3.eth.contract(address=chain_state["offchain_lookup_address"], abi=OFFCHAIN_LOOKUP_ABI,
                                 bytecode=OFFCHAIN_LOOKUP_BYTECODE)


@pytest.fixture
def panic_errors_contract(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _contract(w3, chain_state["panic_errors_contract_address"], PANIC_ERRORS_CONTRACT_DATA)


@pytest.fixture
def async_panic_errors_contract(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return _contract(async_w3, chain_state["panic_errors_contract_address"], PANIC_ERRORS_CONTRACT_DATA)


@pytest.fixture
def storage_contract(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _contract(w3, chain_state["storage_contract_address"], STORAGE_CONTRACT_DATA)


@pytest.fixture
def async_storage_contract(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return _contract(async_w3, chain_state["storage_contract_address"], STORAGE_CONTRACT_DATA)


@pytest.fixture
def mined_txn_hash(chain_state: dict[str, Any]) -> str:
    return str(chain_state["mined_txn_hash"])


@pytest.fixture
def txn_hash_with_log(chain_state: dict[str, Any]) -> str:
    return str(chain_state["txn_hash_with_log"])


def _block(w3: Web3, block_hash: str) -> Any:
    block = w3.eth.get_block(block_hash)
    assert is_dict(block)
    return block


@pytest.fixture
def empty_block(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _block(w3, chain_state["empty_block_hash"])


@pytest.fixture
def block_with_txn(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _block(w3, chain_state["block_with_txn_hash"])


@pytest.fixture
def block_with_txn_with_log(w3: Web3, chain_state: dict[str, Any]) -> Any:
    return _block(w3, chain_state["block_hash_with_log"])


@pytest_asyncio.fixture
async def async_empty_block(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return await async_w3.eth.get_block(chain_state["empty_block_hash"])


@pytest_asyncio.fixture
async def async_block_with_txn(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return await async_w3.eth.get_block(chain_state["block_with_txn_hash"])


@pytest_asyncio.fixture
async def async_block_with_txn_with_log(async_w3: AsyncWeb3, chain_state: dict[str, Any]) -> Any:
    return await async_w3.eth.get_block(chain_state["block_hash_with_log"])
