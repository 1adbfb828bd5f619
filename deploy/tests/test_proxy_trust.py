"""The proxy trust each exposure needs (deploy/k8s/examples) is what the settings accept and what they do.

Every example states, in its ``gxbackend/trusted-proxy-cidrs`` annotation, the ``TRUSTED_PROXY_CIDRS`` it
needs in backend-config. Direct exposures (NodePort, LoadBalancer) trust nobody and keep the client's source
address; the ingress example trusts private networks only (the controller's pods). The base ConfigMap trusts
nobody, and each value starts the production settings and gives the networks it says.
"""

from __future__ import annotations

import ipaddress

import pytest

from deploy.tests.conftest import BASE, DEPLOY, by_kind, load_yaml_files, production_settings

ANNOTATION = "gxbackend/trusted-proxy-cidrs"
PRODUCTION = {"DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 60, "JWT_SECRET": "j" * 40, "ALLOWED_HOSTS": "api",
              "DATABASE_URL": "postgres://gx:pw@db.invalid:5432/gx"}


def exposures(examples):
    return [doc for doc in examples
            if doc["kind"] == "Ingress" or (doc["kind"] == "Service" and doc["spec"].get("type") in
                                            {"NodePort", "LoadBalancer"})]


def trusted_networks(value: str) -> list[str]:
    return production_settings({**PRODUCTION, "TRUSTED_PROXY_CIDRS": value}, ["TRUSTED_PROXY_CIDRS"])[
        "TRUSTED_PROXY_CIDRS"]


def test_the_base_configmap_trusts_no_proxy():
    config = by_kind(load_yaml_files(BASE), "ConfigMap")["backend-config"]["data"]
    assert config["TRUSTED_PROXY_CIDRS"] == ""
    assert "TRUSTED_PROXY_COUNT" not in config
    assert trusted_networks(config["TRUSTED_PROXY_CIDRS"]) == []


def test_the_mainnet_overlay_trusts_only_private_networks(mainnet):
    value = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]["TRUSTED_PROXY_CIDRS"]
    assert all(ipaddress.ip_network(net).is_private for net in trusted_networks(value))


def test_every_exposure_states_the_proxy_trust_it_needs(examples):
    found = exposures(examples)
    assert {doc["kind"] for doc in found} == {"Service", "Ingress"} and len(found) == 3
    for doc in found:
        assert ANNOTATION in doc["metadata"].get("annotations", {}), f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_direct_exposures_trust_nobody_and_keep_the_client_address(examples, service_type):
    service = next(doc for doc in exposures(examples) if doc["spec"].get("type") == service_type)
    assert service["metadata"]["annotations"][ANNOTATION] == ""
    # Cluster would SNAT every client to a node's address: one lockout and throttle key for everyone.
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def test_the_ingress_trusts_its_controllers_private_network_and_the_settings_accept_it(examples):
    ingress = next(doc for doc in exposures(examples) if doc["kind"] == "Ingress")
    value = ingress["metadata"]["annotations"][ANNOTATION]
    networks = trusted_networks(value)
    assert networks == [str(ipaddress.ip_network(item.strip())) for item in value.split(",")]
    assert networks and all(ipaddress.ip_network(net).is_private for net in networks)


def test_the_operators_guide_names_each_exposures_setting(examples):
    readme = (DEPLOY / "README.md").read_text()
    assert "TRUSTED_PROXY_CIDRS" in readme and "TRUSTED_PROXY_COUNT" in readme  # the retired name, for upgrades
    for doc in exposures(examples):
        value = doc["metadata"]["annotations"][ANNOTATION]
        if value:
            assert value in readme, f"deploy/README.md should show the ingress value {value}"
