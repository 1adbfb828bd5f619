"""A Hyperledger Fabric Gateway client on the official protobufs (no Django here).

Modelled on the official fabric-gateway SDKs: :func:`connect` → :class:`Gateway` → :class:`Network` →
:class:`Contract`; proposals, transactions and commits expose ``bytes()``/``digest()`` for offline signing and
for resubmitting a stored signed envelope; chaincode events resume from a :class:`Checkpoint`; filtered
blocks (the peer's Deliver service) give many transactions' outcomes on one stream.
"""

from fabric_client.blocks import BlockStream, FilteredBlock, FilteredTransaction
from fabric_client.checkpoint import Checkpoint, InMemoryCheckpointer
from fabric_client.errors import (
    BlockEventsError,
    ChaincodeEventsError,
    CommitError,
    CommitStatusError,
    EndorseError,
    ErrorDetail,
    EvaluateError,
    GatewayError,
    SubmitError,
)
from fabric_client.events import ChaincodeEvent, ChaincodeEventBlock, EventStream
from fabric_client.gateway import ChainInfo, Contract, Gateway, Network, Timeouts, connect
from fabric_client.identity import X509Identity
from fabric_client.proposal import Proposal
from fabric_client.signing import EcdsaSigner, Signer
from fabric_client.transaction import Commit, Status, Transaction

__all__ = [
    "BlockEventsError",
    "BlockStream",
    "ChainInfo",
    "ChaincodeEvent",
    "ChaincodeEventBlock",
    "ChaincodeEventsError",
    "Checkpoint",
    "Commit",
    "CommitError",
    "CommitStatusError",
    "Contract",
    "EcdsaSigner",
    "EndorseError",
    "ErrorDetail",
    "EvaluateError",
    "EventStream",
    "FilteredBlock",
    "FilteredTransaction",
    "Gateway",
    "GatewayError",
    "InMemoryCheckpointer",
    "Network",
    "Proposal",
    "Signer",
    "Status",
    "SubmitError",
    "Timeouts",
    "Transaction",
    "X509Identity",
    "connect",
]
