"""Fixtures: a devnet on a free loopback port with 50 ms blocks, and a connected client."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_client import Contract, Gateway, Network
from fabric_client.devnet import DevnetServer

VECTORS = Path(__file__).parent / "vectors"
_user_numbers = itertools.count(1)


def load_vector(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[DevnetServer]:
    server = DevnetServer(tmp_path / "devnet", port=0, block_timeout=0.05).start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def gateway(devnet: DevnetServer) -> Iterator[Gateway]:
    with devnet.connect() as gateway:
        yield gateway


@pytest.fixture
def network(gateway: Gateway) -> Network:
    return gateway.network("gxchannel")


@pytest.fixture
def identity_contract(network: Network) -> Contract:
    return network.contract("gxcc", "IdentityContract")


@pytest.fixture
def tokenomics(network: Network) -> Contract:
    return network.contract("gxcc", "TokenomicsContract")


def new_user_args(nationality: str = "NG") -> list[str]:
    """CreateUser arguments for a fresh user (unique id and biometric hash)."""
    n = next(_user_numbers)
    return [f"user{n:028d}", f"{n:064x}", nationality, "30"]


def create_user(identity_contract: Contract, nationality: str = "NG") -> str:
    args = new_user_args(nationality)
    identity_contract.submit("CreateUser", *args)
    return args[0]
