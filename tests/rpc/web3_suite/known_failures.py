"""web3.py module tests that fail on our dev node, each with its reason (rpc/README.md
lists them). From scripts/web3_suite.py's comparison with anvil 1.7.1 in the same run;
names are test names without their class (the sync and async twins share a reason)."""
from __future__ import annotations

_SIGNING = ("signs for web3's keyfile account (eth_sign/eth_signTransaction/eth_signTypedData), whose key the node does "
            "not hold: it signs only for its dev accounts (--dev-accounts); anvil has none for it either")
_ENS = "web3.py's ENS test helper fails on the client side (list has no isascii) on every node"
_CLIENT = "fails inside web3.py before any request (same on anvil)"
_AUTOMINED = "automine mines the first transaction before the test replaces it: nonce too low (same on anvil)"

#: test name -> reason; applies to every mode.
KNOWN_FAILURES: dict[str, str] = {
    "test_eth_get_balance_with_block_identifier": (
        "dev blocks are credited to 0x...c0 (--coinbase), not to the genesis block's miner, so that "
        "address's balance never changes"
    ),
    "test_sign_authorization_send_raw_and_send_set_code_transactions": (
        "EIP-7702 set-code transactions (type 4) are refused: 'transaction type not supported'"
    ),
    "test_async_sign_authorization_send_raw_and_send_set_code_transactions": (
        "EIP-7702 set-code transactions (type 4) are refused: 'transaction type not supported'"
    ),
    **{name: _SIGNING for name in (
        "test_eth_sign", "test_async_eth_sign", "test_eth_sign_transaction", "test_async_eth_sign_transaction",
        "test_eth_sign_transaction_hex_fees", "test_async_eth_sign_transaction_hex_fees",
        "test_eth_sign_transaction_legacy", "test_async_eth_sign_transaction_legacy",
        "test_eth_sign_typed_data", "test_invalid_eth_sign_typed_data",
    )},
    **{name: _ENS for name in (
        "test_async_eth_get_storage_at_ens_name", "test_async_eth_sign_ens_names", "test_async_eth_sign_transaction_ens_names",
        "test_solidity_keccak_ens", "test_eth_get_code_ens_address", "test_eth_get_balance_with_ens_name", "test_eth_get_storage_at_ens_name",
        "test_eth_get_transaction_count_ens_name", "test_eth_sign_ens_names", "test_eth_sign_transaction_ens_names",
    )},
    **{name: _CLIENT for name in (
        "test_eth_modify_transaction_legacy", "test_gas_price_from_strategy_bypassed_for_dynamic_fee_txn",
    )},
}

#: Failures in one mode only: mode -> {test name: reason}.
KNOWN_FAILURES_BY_MODE: dict[str, dict[str, str]] = {
    "automine": {name: _AUTOMINED for name in (
        "test_eth_replace_transaction", "test_async_eth_replace_transaction", "test_eth_replace_transaction_legacy",
        "test_async_eth_replace_transaction_legacy", "test_eth_replace_transaction_underpriced",
        "test_async_eth_replace_transaction_underpriced", "test_eth_replace_transaction_gas_price_defaulting_minimum",
        "test_async_eth_replace_transaction_gas_price_defaulting_minimum",
        "test_eth_replace_transaction_gas_price_defaulting_strategy_higher",
        "test_async_eth_replace_transaction_gas_price_defaulting_strategy_higher",
        "test_eth_replace_transaction_gas_price_defaulting_strategy_lower",
        "test_async_eth_replace_transaction_gas_price_defaulting_strategy_lower", "test_eth_modify_transaction",
    )} | {name: "automine may mine the transaction before the test looks for it unmined (timing; anvil always does)"
          for name in ("test_eth_get_transaction_receipt_unmined", "test_async_eth_get_transaction_receipt_unmined",
                       "test_eth_wait_for_transaction_receipt_unmined")},
    "interval": {},
}


def known_failure(test_name: str, mode: str) -> str | None:
    """The reason ``test_name`` is expected to fail in ``mode``, or None."""
    return KNOWN_FAILURES.get(test_name) or KNOWN_FAILURES_BY_MODE.get(mode, {}).get(test_name)
