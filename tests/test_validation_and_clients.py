"""Validation of platform records (with generated inputs), the client registry, redaction."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adcrawler.listing import NOT_JSON, Page, read_page
from adcrawler.logs import RedactingFilter, Secrets
from adcrawler.model import Campaign, InvalidRecord, RejectedRecord, record_key, validate_campaign
from adcrawler.registry import Client, ClientConfigError, Registry
from mock_api.campaigns import (
    IMPLAUSIBLE,
    MALFORMED,
    MISSING,
    ODD_VALUES,
    OUT_OF_RANGE,
    PARSER_LIMIT_TEXT,
    apply_block,
    as_numeric_strings,
    make_campaign,
    quirks_campaign,
)

GOOD = make_campaign("acme", 1, 0, 0)


def test_valid_campaign_is_typed_and_keeps_the_raw_record():
    campaign = validate_campaign(GOOD)
    assert campaign.campaign_id == "campaign_1"
    assert isinstance(campaign.budget, Decimal)
    assert campaign.created_at.tzinfo is not None
    assert json.loads(campaign.raw) == GOOD and campaign.quality_flags == ()


def test_numeric_strings_and_integral_floats_are_converted_without_loss():
    campaign = validate_campaign(as_numeric_strings(GOOD))
    assert (campaign.impressions, campaign.budget) == (GOOD["impressions"], Decimal(str(GOOD["budget"])))
    assert validate_campaign({**GOOD, "clicks": 12.0, "conversions": "7"}).clicks == 12
    assert json.loads(validate_campaign(as_numeric_strings(GOOD)).raw)["impressions"] == str(GOOD["impressions"])


def test_unknown_fields_and_statuses_are_kept():
    record = {**GOOD, "status": "learning", "objective": "CONVERSIONS", "labels": ["q4"]}
    campaign = validate_campaign(record)
    assert campaign.status == "learning" and campaign.quality_flags == ("unknown_status",)
    assert json.loads(campaign.raw)["labels"] == ["q4"]


@pytest.mark.parametrize("k", range(len(IMPLAUSIBLE)))
def test_implausible_values_are_stored_and_flagged(k):
    campaign = validate_campaign(apply_block(GOOD, "implausible", k))
    assert campaign.quality_flags


def test_the_inherited_platforms_records_are_all_kept():
    import random

    rng = random.Random(1)
    campaigns = [validate_campaign(quirks_campaign(n, rng)) for n in range(1, 1001)]
    flagged = [c for c in campaigns if c.quality_flags]
    assert 0 < len(flagged) < 200 and {f for c in flagged for f in c.quality_flags} <= {
        "clicks_exceed_impressions", "conversions_exceed_clicks"}


@pytest.mark.parametrize("block, k", [("malformed", k) for k in range(len(MALFORMED))]
                         + [("out_of_range", k) for k in range(len(OUT_OF_RANGE))])
def test_what_cannot_be_stored_is_quarantined_with_a_reason(block, k):
    record = apply_block(GOOD, block, k)
    with pytest.raises(InvalidRecord) as err:
        validate_campaign(record)
    assert str(err.value)
    usable = isinstance(record, dict) and record.get("id") == "campaign_1"
    assert (err.value.campaign_id == "campaign_1") == usable  # a usable id can still be synced
    kept = RejectedRecord.of("acme", record, str(err.value), validate_campaign(GOOD).created_at)
    assert json.loads(kept.payload) == json.loads(json.dumps(record, default=str))


@pytest.mark.parametrize("change", [
    {"impressions": True}, {"budget": float("nan")}, {"budget": 10**14}, {"budget": "-1e14"},
    {"created_at": "2024-13-01"}, {"name": "x\ud800y"}, {"objective": "\x00"}, {"extra": [1.0, float("inf")]},
    {"id": "x" * 129}, {"id": True}, {"name": 12}, {"clicks": "many"},
    {"created_at": "9999-12-31T23:59:59-12:00"}, {"created_at": "0001-01-01T00:00:00+14:00"},
])
def test_more_values_that_cannot_be_stored(change):
    with pytest.raises(InvalidRecord):
        validate_campaign({**GOOD, **change})


@pytest.mark.parametrize("k", range(len(MISSING)))
def test_a_value_not_sent_is_null_and_flagged_not_quarantined(k):
    record = apply_block(GOOD, "missing", k)
    campaign = validate_campaign(record)
    absent = [name for name in ("name", "status", "budget", "impressions", "clicks", "conversions", "created_at")
              if record.get(name) is None]
    assert absent and all(getattr(campaign, name) is None for name in absent)
    assert set(campaign.quality_flags) == {f"missing_{name}" for name in absent}


def test_a_budget_is_exact_or_flagged_rounded():
    exact = validate_campaign({**GOOD, "budget": "99999999999999.99"})
    assert exact.budget == Decimal("99999999999999.99") and exact.quality_flags == ()
    for sent, stored in (("0.005", "0.00"), ("12.345", "12.34"), ("0.0049", "0.00"), (Decimal("1E-7"), "0.00")):
        campaign = validate_campaign({**GOOD, "budget": sent})
        assert str(campaign.budget) == stored and campaign.quality_flags == ("budget_rounded",), sent


@pytest.mark.parametrize("k", range(len(ODD_VALUES)))
def test_odd_values_are_stored_exactly_flagged_or_quarantined(k):
    record = apply_block(GOOD, "odd_values", k)
    try:
        campaign = validate_campaign(record)
    except InvalidRecord as exc:
        assert "outside years 1-9999" in str(exc) and exc.campaign_id == "campaign_1"
        return
    assert campaign.budget == Decimal(str(record["budget"])) or "budget_rounded" in campaign.quality_flags


def _page_text(records: list[str], **pagination) -> bytes:
    return ('{"data": [' + ", ".join(records) + '], "pagination": ' + json.dumps(pagination) + "}").encode()


def test_a_page_is_read_record_by_record_with_each_text_as_sent():
    good = '{"id": "campaign_1", "budget": 12345678901234.123456789, "extra": {"b": 1, "a": 2}}'
    page = read_page(_page_text([good, '"bare"'], total=2, has_more=False))
    assert isinstance(page, Page) and page.fields["pagination"] == {"total": 2, "has_more": False}
    first, second = page.entries
    assert first.text == good and first.value["budget"] == Decimal("12345678901234.123456789")
    assert second.value == "bare" and second.error is None


@pytest.mark.parametrize("hostile", list(PARSER_LIMIT_TEXT.values()))
def test_one_record_past_the_parsers_limits_does_not_take_its_page_down(hostile):
    records = ['{"id": "campaign_1"}', '{"id": "campaign_2", "x": {"id": "inner"}, "extra": ' + hostile + "}",
               '{"id": "campaign_3"}']
    body = _page_text(records, total=3)
    with pytest.raises((RecursionError, ValueError)):
        json.loads(body)  # what reading the page whole does
    page = read_page(body)
    assert [e.value["id"] for e in page.entries if e.error is None] == ["campaign_1", "campaign_3"]
    (bad,) = [e for e in page.entries if e.error]
    assert bad.id == "campaign_2" and bad.text == records[1] and "parser" in bad.error


@pytest.mark.parametrize("body", [b"<html>", b'{"data": [1, 2', b'{"data": [1]} x', b"\xff\xfe\x00", b"[1]",
                                  b'{"data": [' + b"[" * 100_000 + b"]"])
def test_a_body_that_is_not_a_json_object_is_not_json(body):
    assert read_page(body) is NOT_JSON


def test_a_naive_date_is_read_as_utc_and_flagged():
    campaign = validate_campaign({**GOOD, "created_at": "2024-01-01T00:00:00"})
    assert campaign.created_at.tzinfo is not None and "created_at_without_timezone" in campaign.quality_flags


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = ("id", "name", "status", "budget", "impressions", "clicks", "conversions", "created_at")


@settings(max_examples=500, deadline=None)
@given(JSON)
def test_any_json_value_gives_a_campaign_or_invalid_record(value):
    try:
        assert isinstance(validate_campaign(value), Campaign)
    except InvalidRecord:
        pass


@settings(max_examples=500, deadline=None)
@given(st.fixed_dictionaries({name: JSON | st.just(GOOD[name]) for name in FIELDS}))
def test_any_record_shaped_value_gives_a_campaign_or_invalid_record(record):
    try:
        campaign = validate_campaign(record)
    except InvalidRecord as exc:
        assert str(exc)
        return
    assert campaign.clicks is None or -(2**63) <= campaign.clicks < 2**63
    assert campaign.budget is None or abs(campaign.budget) < 10**14
    json.loads(campaign.raw)


def test_record_identity():
    assert record_key({"id": "campaign_1", "x": 1}) == record_key({"id": "campaign_1", "x": 2})
    assert record_key("campaign_1") != record_key({"id": "campaign_1"})
    assert record_key({"name": "no id"}) == record_key({"name": "no id"})


def test_registry_maps_slugs_and_defaults(tmp_path):
    path = tmp_path / "clients.toml"
    path.write_text('[clients.acme]\nclient_id = "acme-corp"\nemail_env = "ACME_EMAIL"\n'
                    'password_env = "ACME_PASSWORD"\n[clients.b]\n')
    registry = Registry.load(path)
    assert [c.client_id for c in registry.select("all")] == ["acme-corp", "b"]
    # A slug the registry does not list is a typo until the registry says otherwise.
    with pytest.raises(ClientConfigError,
                       match=r"client 'other' is not in the registry .* \(known: acme \(acme-corp\), b\)"):
        registry.select("acme, other")
    # Either name of a client selects it: its slug, or the platform's client id.
    assert registry.select("acme-corp") == registry.select("acme") == [registry.clients["acme"]]
    path.write_text("allow_unregistered = true\n" + path.read_text())
    acme, other = Registry.load(path).select("acme, other")
    assert acme == Client("acme", "acme-corp", "ACME_EMAIL", "ACME_PASSWORD")
    assert other == Client("other", "other")
    assert not Registry.load().allow_unregistered  # the packaged registry lets no typo through


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

    from adcrawler.logs import SECRETS as secrets

    secrets.add("hunter22", "abc")  # too short to redact safely
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login %s failed", ("hunter22",), None)
    try:
        raise RuntimeError("token hunter22 rejected")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "hunter22" not in text and Secrets.MARK in text and "abc" not in secrets.redact("xyz")
