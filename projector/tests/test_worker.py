"""The projector loop with a scripted chain: a malformed event blocks progress visibly and /readyz says so
without taking the API out of service."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from identity.tests.conftest import PASSWORD, register_body
from projector.models import Checkpoint, Wallet
from projector.services import CHECKPOINT_NAME
from projector.tests.conftest import ScriptedNetwork, block, event, user_created
from projector.worker import Projector

pytestmark = pytest.mark.django_db


def run_steps(worker: Projector, n: int) -> None:
    for _ in range(n):
        worker.step()
        worker.retry_at = 0.0  # skip the backoff wait; the retry itself still happens
        worker.next_height_poll = 0.0


def test_a_malformed_event_stops_progress_and_readyz_names_the_lag_while_the_api_keeps_serving(
        make_user, settings, api_client, capsys):
    settings.PROJECTION_LAG_THRESHOLD_BLOCKS = 3
    alice, bob = make_user(), make_user()
    bad = event("UserCreated", {"v": 1, "userId": bob.pk.hex, "nationality": "NG"})  # no amounts
    network = ScriptedNetwork([block(1, user_created(alice.pk.hex)), block(2, bad),
                               block(3, user_created(bob.pk.hex))], height=4)
    worker = Projector(network_factory=lambda: network, chaincode="gxcc", wait_timeout=0.05)
    try:
        run_steps(worker, 12)
        checkpoint = Checkpoint.objects.get(name=CHECKPOINT_NAME)
        assert checkpoint.block_number == 2  # stopped at the bad block, never past it
        assert checkpoint.error_tx_id == bad.transaction_id and "missing field 'genesisAmount'" in checkpoint.error
        assert worker.stuck and network.opened >= 3  # it retried (reopening from the checkpoint) and is still stuck
        assert not Wallet.objects.filter(pk=bob.pk).exists()
        within = api_client.get("/readyz").json()
        assert within["checks"]["projection_lag"]["ok"] is True and "warnings" not in within  # 2 blocks: within

        network.height = 40  # the chain moves on, the projector cannot: lag grows past the threshold
        run_steps(worker, 2)
        response = api_client.get("/readyz")
        # The pod stays in the Service: the lag is named in the body, not turned into an outage.
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["status"] == "ready"
        lag = body["checks"]["projection_lag"]
        assert lag["ok"] is False and lag["gates_readiness"] is False
        assert "projection 38 blocks behind chain height 40 (threshold 3)" in lag["detail"]
        assert bad.transaction_id in lag["detail"]
        assert any("projection 38 blocks behind" in warning for warning in body["warnings"])

        # What needs no projection is served meanwhile: registration, login, profile reads.
        registered = api_client.post("/api/v1/users", register_body(), format="json")
        assert registered.status_code == 201, registered.json()
        login = api_client.post("/api/v1/auth/login", {"email": registered.json()["email"], "password": PASSWORD},
                                format="json")
        assert login.status_code == 200, login.json()
        me = api_client.get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {login.json()['access']}")
        assert me.status_code == 200 and me.json()["id"] == registered.json()["id"]

        # Failing readiness on lag is an explicit opt-in.
        settings.READYZ_FAIL_ON_PROJECTION_LAG = True
        response = api_client.get("/readyz")
        assert response.status_code == 503
        message = response.json()["message"]
        assert "projection 38 blocks behind chain height 40 (threshold 3)" in message
        assert bad.transaction_id in message

        call_command("projector_status")
        out = capsys.readouterr().out
        assert "lag: 38 blocks" in out and "STUCK since" in out and bad.transaction_id in out
    finally:
        worker.close()


def test_an_idle_chain_stays_ready(make_user, api_client, settings):
    settings.PROJECTION_LAG_THRESHOLD_BLOCKS = 0
    alice = make_user()
    network = ScriptedNetwork([block(1, user_created(alice.pk.hex))], height=2)
    worker = Projector(network_factory=lambda: network, chaincode="gxcc", wait_timeout=0.05)
    try:
        run_steps(worker, 4)
    finally:
        worker.close()
    # Hours without an event change nothing: lag is counted in blocks, not seconds.
    Checkpoint.objects.filter(name=CHECKPOINT_NAME).update(last_event_at="2001-01-01T00:00:00Z")
    response = api_client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["projection_lag"]["detail"].startswith("projection 0 blocks behind")


def test_a_stale_stored_height_is_flagged_but_alone_does_not_fail_readiness(make_user, api_client, settings):
    Checkpoint.objects.create(name=CHECKPOINT_NAME, block_number=5, chain_height=5,
                              chain_height_at="2001-01-01T00:00:00Z")
    response = api_client.get("/readyz")
    assert response.status_code == 200
    assert "chain height is stale" in response.json()["checks"]["projection_lag"]["detail"]


def test_a_database_outage_while_applying_is_retried_without_calling_the_projector_stuck(make_user, monkeypatch):
    from django.db import OperationalError

    from projector import metrics, services

    alice = make_user()
    network = ScriptedNetwork([block(1, user_created(alice.pk.hex))])
    real_apply = services.apply_blocks
    outage = {"left": 2}

    def apply_blocks(*args, **kwargs):
        if outage["left"]:
            outage["left"] -= 1
            raise OperationalError("terminating connection due to administrator command")
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(services, "apply_blocks", apply_blocks)
    worker = Projector(network_factory=lambda: network, chaincode="gxcc", wait_timeout=0.05)
    try:
        run_steps(worker, 2)
        assert not worker.stuck and metrics.STUCK._value.get() == 0
        assert Checkpoint.objects.get(name=CHECKPOINT_NAME).error == ""
        run_steps(worker, 4)
        assert Wallet.objects.filter(pk=alice.pk).exists()
        assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 2
    finally:
        worker.close()


def test_the_database_restarting_while_the_chain_height_is_stored_or_the_checkpoint_read_is_outlived(
        make_user, monkeypatch, caplog):
    from django.db import OperationalError

    from projector import metrics, services

    alice = make_user()
    network = ScriptedNetwork([block(1, user_created(alice.pk.hex))], height=2)
    real_get, real_store = services.get_checkpoint, services.store_chain_height
    outage = {"get": 1, "store": 1}

    def failing(name, real):
        def call(*args, **kwargs):
            if outage[name]:
                outage[name] -= 1
                raise OperationalError("terminating connection due to administrator command")
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(services, "get_checkpoint", failing("get", real_get))
    monkeypatch.setattr(services, "store_chain_height", failing("store", real_store))
    worker = Projector(network_factory=lambda: network, chaincode="gxcc", wait_timeout=0.05)
    try:
        with caplog.at_level("WARNING", logger="projector"):
            run_steps(worker, 1)  # took the lock, could not read the checkpoint: gave the lead back
            assert not worker.leading and metrics.IS_LEADER._value.get() == 0
            run_steps(worker, 6)
        assert worker.leading and metrics.IS_LEADER._value.get() == 1
        assert Wallet.objects.filter(pk=alice.pk).exists()
        assert Checkpoint.objects.get(name=CHECKPOINT_NAME).chain_height == 2
        said = [r.getMessage() for r in caplog.records]
        assert "projector cannot read its checkpoint: database unavailable (OperationalError)" in said
        assert "projector cannot store the chain height: database unavailable (OperationalError)" in said
    finally:
        worker.close()
