from __future__ import annotations

from decimal import Decimal

import pytest

from adcrawler.clients import Client, ClientConfigError, Registry
from adcrawler.redaction import MARK, RedactingFilter, Secrets
from adcrawler.validation import InvalidRecord, validate_campaign
from mock_api.campaigns import MALFORMED, corrupt, make_campaign

GOOD = make_campaign("acme", 1, 0, 0)


def test_valid_campaign_is_typed():
    campaign = validate_campaign(GOOD)
    assert campaign.campaign_id == "campaign_1"
    assert isinstance(campaign.budget, Decimal)
    assert campaign.created_at.tzinfo is not None


@pytest.mark.parametrize("k", range(len(MALFORMED)))
def test_every_malformed_kind_is_rejected_with_a_reason(k):
    with pytest.raises(InvalidRecord) as err:
        validate_campaign(corrupt(GOOD, k))
    assert str(err.value)


@pytest.mark.parametrize("change", [
    {"impressions": True}, {"clicks": 1.5}, {"budget": float("nan")}, {"budget": -1},
    {"created_at": "2024-01-01T00:00:00"}, {"name": "x\x00y"}, {"name": "   "},
    {"conversions": 10**9},
])
def test_more_bad_values(change):
    with pytest.raises(InvalidRecord):
        validate_campaign({**GOOD, **change})


def test_non_object_record():
    with pytest.raises(InvalidRecord):
        validate_campaign(["campaign_1"])


def test_registry_maps_slugs_and_defaults(tmp_path):
    path = tmp_path / "clients.toml"
    path.write_text('[clients.acme]\nclient_id = "acme-corp"\nemail_env = "ACME_EMAIL"\n'
                    'password_env = "ACME_PASSWORD"\n[clients.b]\n')
    registry = Registry.load(path)
    assert [c.client_id for c in registry.select("all")] == ["acme-corp", "b"]
    acme, other = registry.select("acme, other")
    assert acme == Client("acme", "acme-corp", "ACME_EMAIL", "ACME_PASSWORD")
    assert other == Client("other", "other")


@pytest.mark.parametrize("argument", ["", "bad slug", "a,../etc"])
def test_registry_rejects_bad_arguments(argument):
    with pytest.raises(ClientConfigError):
        Registry.load().select(argument)


def test_packaged_registry_and_missing_file(tmp_path):
    assert "demo" in Registry.load().clients
    with pytest.raises(ClientConfigError, match="does not exist"):
        Registry.load(tmp_path / "missing.toml")


def test_registry_rejects_unknown_keys(tmp_path):
    path = tmp_path / "clients.toml"
    path.write_text('[clients.a]\npassword = "oops"\n')
    with pytest.raises(ClientConfigError, match="unknown keys"):
        Registry.load(path)


def test_missing_credentials_name_the_variables(monkeypatch):
    monkeypatch.delenv("NOPE_EMAIL", raising=False)
    with pytest.raises(ClientConfigError, match="NOPE_EMAIL"):
        Client("x", "x", "NOPE_EMAIL", "NOPE_PASSWORD").credentials()


def test_redacting_filter_rewrites_message_args_and_traceback():
    import logging

    secrets = Secrets()
    secrets.add("hunter22", "abc")  # too short to redact safely
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login %s failed", ("hunter22",), None)
    try:
        raise RuntimeError("token hunter22 rejected")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter(secrets).filter(record)
    text = logging.Formatter().format(record)
    assert "hunter22" not in text and MARK in text and "abc" not in secrets.redact("xyz")
