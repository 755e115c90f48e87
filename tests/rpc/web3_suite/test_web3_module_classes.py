"""web3.py 8's own node test classes, unmodified, against a real dev node (conftest.py)."""
from __future__ import annotations

from web3._utils.module_testing import (
    AsyncEthModuleTest,
    AsyncNetModuleTest,
    EthModuleTest,
    NetModuleTest,
    Web3ModuleTest,
)
from web3._utils.module_testing.web3_module import AsyncWeb3ModuleTest


class TestEthModule(EthModuleTest):
    pass


class TestAsyncEthModule(AsyncEthModuleTest):
    pass


class TestNetModule(NetModuleTest):
    pass


class TestAsyncNetModule(AsyncNetModuleTest):
    pass


class TestWeb3Module(Web3ModuleTest):
    def _check_web3_client_version(self, client_version: str) -> None:
        assert client_version.startswith(("pouw-node/", "anvil/"))


class TestAsyncWeb3Module(AsyncWeb3ModuleTest):
    def _check_web3_client_version(self, client_version: str) -> None:
        assert client_version.startswith(("pouw-node/", "anvil/"))
