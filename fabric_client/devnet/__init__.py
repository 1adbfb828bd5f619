"""Devnet: a Fabric Gateway test network in one Python process (see :mod:`fabric_client.devnet.server`).

    from fabric_client.devnet import DevnetServer
    with DevnetServer(tmp_path, port=0, block_timeout=0.05) as devnet:
        gateway = devnet.connect()
        contract = gateway.network(devnet.channel).contract(devnet.chaincode, "IdentityContract")

Command line: ``python -m fabric_client.devnet --data-dir var/devnet`` (prints the FABRIC_* variables);
as a child process from tests: :class:`DevnetProcess`; a large chain quickly: ``DevnetServer.seed`` or
``python -m fabric_client.devnet.seed``; many transactions over gRPC: :func:`fabric_client.devnet.load.submit_many`.
"""

from fabric_client.devnet.process import DevnetProcess
from fabric_client.devnet.server import CHAINCODE, CHANNEL, MSP_ID, DevnetServer, EndorsementRefused

__all__ = ["CHAINCODE", "CHANNEL", "MSP_ID", "DevnetProcess", "DevnetServer", "EndorsementRefused"]
