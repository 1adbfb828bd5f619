"""``manage.py reconcile_balances``: compare every projected wallet with the chaincode's ``GetBalance``.

Exits non-zero listing each mismatch (or a wallet the chain does not know). Meaningful when the projector has
caught up: a transfer committed after the checkpoint shows up as a mismatch until it is projected, so the
command prints the lag it saw.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fabric_client.errors import GatewayError
from projector.management.commands.run_projector import network_from_settings
from projector.models import Wallet
from projector.services import get_checkpoint, lag_blocks


class Command(BaseCommand):
    help = "Compare each wallet's projected balance with GetBalance on the chain; exit 1 on any mismatch."

    def handle(self, *args: Any, **options: Any) -> None:
        contract = network_from_settings().contract(settings.FABRIC_CHAINCODE, "TokenomicsContract")
        mismatches: list[str] = []
        checked = 0
        for wallet in Wallet.objects.order_by("user_id").iterator(chunk_size=500):
            onchain_id = wallet.user_id.hex
            checked += 1
            try:
                chain = int(contract.evaluate("GetBalance", onchain_id, timeout=settings.FABRIC_EVALUATE_TIMEOUT))
            except GatewayError as exc:
                if exc.chaincode_code == "USER_NOT_FOUND":
                    mismatches.append(f"{wallet.user_id} ({onchain_id}): projected {wallet.balance_qirat}, "
                                      "chain has no such user")
                    continue
                raise CommandError(f"cannot read the balance of {onchain_id}: {exc}") from exc
            if chain != wallet.balance_qirat:
                mismatches.append(f"{wallet.user_id} ({onchain_id}): projected {wallet.balance_qirat}, "
                                  f"chain {chain}, difference {chain - wallet.balance_qirat}")
        checkpoint = get_checkpoint()
        lag = lag_blocks(height=checkpoint.chain_height, block_number=checkpoint.block_number)
        for line in mismatches:
            self.stdout.write(f"MISMATCH {line}")
        if mismatches:
            raise CommandError(f"{len(mismatches)} of {checked} wallets differ from the chain "
                               f"(projection lag {lag if lag is not None else '?'} blocks)")
        self.stdout.write(self.style.SUCCESS(f"{checked} wallets match the chain"))
