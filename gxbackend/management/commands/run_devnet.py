"""``manage.py run_devnet``: devnet (our Fabric Gateway test peer) with this project's settings as defaults.

The data directory is ``$GX_VAR_DIR/devnet`` and the listen address comes from ``FABRIC_PEER_ENDPOINT``, so the
credentials it writes on first start are exactly where ``FABRIC_CERT_PATH``/``FABRIC_KEY_PATH`` look in
development. Extra options are passed through to ``python -m fabric_client.devnet``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run devnet, a Fabric Gateway peer for development and tests, until Ctrl-C/SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--block-timeout-ms", type=int, default=250)
        parser.add_argument("--block-size", type=int, default=10)

    def handle(self, *args: Any, **options: Any) -> None:
        from fabric_client.devnet.__main__ import main

        host, _, port = settings.FABRIC_PEER_ENDPOINT.rpartition(":")
        code = main([
            "--data-dir", str(Path(settings.VAR_DIR) / "devnet"),
            "--host", host or "127.0.0.1",
            "--port", port,
            "--block-timeout-ms", str(options["block_timeout_ms"]),
            "--block-size", str(options["block_size"]),
        ])
        sys.exit(code)
