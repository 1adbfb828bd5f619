"""``python -m fabric_client.devnet``: run devnet until SIGTERM/SIGINT (then exit 0).

On first start it creates the CA, the Org1MSP member certificates (peer and client user) and the ledger under
``--data-dir``; later starts reuse them and continue the chain. It prints ``export NAME=value`` lines for the
client (``eval "$(…)"``-friendly), then ``devnet ready``. ``--port 0`` picks a free port (printed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from fabric_client.devnet.process import READY
from fabric_client.devnet.server import DevnetServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fabric_client.devnet", description=__doc__)
    parser.add_argument("--data-dir", default="var/devnet", help="certificates, keys and ledger (kept)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7051, help="0 picks a free port")
    parser.add_argument("--block-timeout-ms", type=int, default=250, help="cut a block this long after its first tx")
    parser.add_argument("--block-size", type=int, default=10, help="cut a block at this many transactions")
    parser.add_argument("--tls", action="store_true", help="serve TLS (root: tls/ca.crt under the data dir)")
    parser.add_argument("--tls-client-auth", action="store_true", help="require client TLS certificates")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = DevnetServer(
        args.data_dir,
        host=args.host,
        port=args.port,
        block_timeout=args.block_timeout_ms / 1000,
        block_size=args.block_size,
        tls=args.tls,
        tls_client_auth=args.tls_client_auth,
    ).start()
    # The command's output is this block of shell lines (logs go to stderr).
    lines = [f"export {name}={value}" for name, value in server.env().items()]
    sys.stdout.write("\n".join([*lines, READY]) + "\n")
    sys.stdout.flush()
    while not stopping.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
