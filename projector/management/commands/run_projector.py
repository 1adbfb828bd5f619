"""``manage.py run_projector``: project chain events into the read models, each block in one transaction
with the checkpoint (when behind, the blocks already queued go together in one transaction).

Several replicas may run: the one holding the PostgreSQL advisory lock leads, the others wait as hot standby
(``projector_is_leader`` 0) and take over from the checkpoint when it dies. See ``projector/worker.py``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from gxbackend.workers import WorkerCommand
from projector import metrics
from projector.worker import Projector


def network_from_settings() -> Any:
    from gxbackend.fabric import gateway_from_settings

    return gateway_from_settings().network(settings.FABRIC_CHANNEL)


class Command(WorkerCommand):
    help = "Project chain events into UserProfile, Wallet and Transaction (leader or hot standby)."
    worker_name = "projector"
    metrics_port_setting = "PROJECTOR_METRICS_PORT"
    idle_seconds = 0.05

    def setup(self, **options: Any) -> None:
        self.projector = Projector(network_factory=network_from_settings, chaincode=settings.FABRIC_CHAINCODE)
        metrics.IS_LEADER.set(0)

    def run_unit(self) -> bool:
        was_leading = self.projector.leading
        found = self.projector.step()
        if not self.projector.leading and not was_leading:
            # Standby: poll the lock at a gentle pace, waking at once on SIGTERM.
            self.sleep(settings.PROJECTOR_STANDBY_POLL_SECONDS)
        return found

    def on_stop(self) -> None:
        if hasattr(self, "projector"):
            self.projector.close()

    def is_ready(self) -> tuple[bool, str]:
        if not hasattr(self, "projector"):
            return False, "starting"
        if not self.projector.leading:
            return True, "standby"
        if self.projector.stuck:
            return False, f"leader, stuck: {self.projector.last_error}"
        return True, "leader"
