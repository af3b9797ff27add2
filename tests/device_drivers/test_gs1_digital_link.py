"""GS1 Digital Link URIs in scans: the same typed fields as an element string, or a refusal."""

from __future__ import annotations

import datetime
from decimal import Decimal
from urllib.parse import quote, urlencode

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from device_drivers.errors import InvalidGs1Error
from device_drivers.scanners.base import Gs1Data
from device_drivers.scanners.framing import parse_line
from device_drivers.scanners.gs1 import looks_like_digital_link, parse_digital_link, parse_gs1

GS = "\x1d"
NOW = datetime.datetime(2026, 1, 5, 8, 30, tzinfo=datetime.UTC)


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10, written out here so the tests do not trust the code under test."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


GTIN = "09506000134352"
SSCC = "009506000000000019"
CONTENT = "09501101530003"


def fields(data: Gs1Data) -> tuple[object, ...]:
    return (
        data.gtin,
        data.lot,
        data.expiry,
        data.serial,
        data.sscc,
        data.count,
        data.net_weight_kg,
        data.content_gtin,
        data.elements,
    )


@pytest.mark.parametrize(
    ("uri", "element_string"),
    [
        (f"https://id.gs1.org/01/{GTIN}/10/ABC?17=261231", f"01{GTIN}17261231" + "10ABC"),
        # Expiry in the path: not where the standard puts it, but unambiguous.
        (f"https://id.gs1.org/01/{GTIN}/10/ABC/17/261231", f"01{GTIN}17261231" + "10ABC"),
        (
            f"https://brand.example.com/products/01/{GTIN}/10/LOT-7/21/SN1"
            "?17=280200&3103=001250&linkType=gs1:pip",
            f"01{GTIN}172802003103001250" + f"10LOT-7{GS}21SN1",
        ),
        (f"https://id.gs1.org/00/{SSCC}?02={CONTENT}&37=24", f"00{SSCC}02{CONTENT}3724"),
        (f"https://id.gs1.org/01/{GTIN[1:]}?30=12", f"01{GTIN}3012"),  # GTIN-13 in the path
        (f"HTTPS://ID.GS1.ORG/01/{GTIN}/10/A%2FB", f"01{GTIN}10A/B"),
    ],
)
def test_a_digital_link_gives_the_fields_of_its_element_string(
    uri: str, element_string: str
) -> None:
    assert fields(parse_digital_link(uri)) == fields(parse_gs1(element_string))


def test_typed_fields_of_a_brand_domain_uri() -> None:
    data = parse_digital_link(
        f"https://shop.example.cn/p/q/01/{GTIN}/10/B2/21/S-9?3103=000750&17=261200"
    )
    assert data.gtin == GTIN
    assert data.lot == "B2"
    assert data.serial == "S-9"
    assert data.expiry == datetime.date(2026, 12, 31)  # day 00: the month's last day
    assert data.net_weight_kg == Decimal("0.750")
    assert isinstance(data.net_weight_kg, Decimal)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        (f"https://id.gs1.org/01/{GTIN[:-1]}3", "check digit"),
        (f"https://id.gs1.org/00/{SSCC[:-1]}8", "check digit"),
        (f"https://id.gs1.org/00/{SSCC}?02={CONTENT[:-1]}4", "check digit"),
        (f"https://id.gs1.org/01/{GTIN}1", "pattern"),  # 15 digits
        ("https://id.gs1.org/01/0", "read back"),  # biip would pad it to 14 zeros
        (f"https://id.gs1.org/01/{GTIN}?17=261331", "pattern"),  # month 13
        (f"https://id.gs1.org/01/{GTIN}?17=", "empty"),
        (f"https://id.gs1.org/01/{GTIN}?17=261231&17=261230", "twice"),
        (f"https://id.gs1.org/01/{GTIN}/10/A?10=B", "twice"),
        (f"https://id.gs1.org/01/{GTIN}?1799=1", "not a GS1 Application Identifier"),
        (f"https://id.gs1.org/01/{GTIN}/10", "without a value"),
        (f"https://id.gs1.org/01/{GTIN}/lot/ABC", "not a GS1 Application Identifier"),
        (f"https://id.gs1.org/01/{GTIN}/10/{'X' * 21}", "pattern"),  # lot over 20
        (f"https:///01/{GTIN}", "host"),
        (f"ftp://id.gs1.org/01/{GTIN}", "http"),
        ("https://example.com/menu", "primary key"),
        ("https://[::1/01/1", "not a URI"),
    ],
)
def test_doubtful_uris_are_refused_with_a_reason(uri: str, why: str) -> None:
    with pytest.raises(InvalidGs1Error, match=why) as caught:
        parse_digital_link(uri)
    assert caught.value.reason == "gs1_invalid"


def test_looks_like_digital_link_only_for_urls_with_a_primary_key() -> None:
    assert looks_like_digital_link(f"https://id.gs1.org/01/{GTIN}")
    assert looks_like_digital_link(f"http://brand.example/x/00/{SSCC}?x=1")
    assert not looks_like_digital_link("https://example.com/menu")
    assert not looks_like_digital_link("https://example.com/2024/10/sale")  # 10 is no key
    assert not looks_like_digital_link(f"01{GTIN}")
    assert not looks_like_digital_link("https://example.com/01")


@pytest.mark.parametrize("symbology", ["]Q1", "]d1", "]Q3", ""])
def test_a_scanned_digital_link_is_a_gs1_scan(symbology: str) -> None:
    uri = f"https://id.gs1.org/01/{GTIN}/10/ABC?17=261231"
    scan = parse_line((symbology + uri).encode(), device_id="d", received_at=NOW)
    assert scan.data == uri
    assert scan.gs1 is not None
    assert (scan.gs1.gtin, scan.gs1.lot) == (GTIN, "ABC")
    assert scan.gs1.expiry == datetime.date(2026, 12, 31)


def test_a_scanned_url_that_is_not_a_digital_link_stays_a_plain_scan() -> None:
    scan = parse_line(b"]Q1https://example.com/menu", device_id="d", received_at=NOW)
    assert scan.gs1 is None
    assert scan.data == "https://example.com/menu"
    scan = parse_line(
        f"]Q1https://id.gs1.org/01/{GTIN}".encode(), device_id="d", received_at=NOW, gs1="never"
    )
    assert scan.gs1 is None


def test_a_url_where_gs1_is_expected_must_be_a_valid_digital_link() -> None:
    with pytest.raises(InvalidGs1Error):
        parse_line(b"]Q3https://example.com/menu", device_id="d", received_at=NOW)
    with pytest.raises(InvalidGs1Error):
        parse_line(b"https://example.com/menu", device_id="d", received_at=NOW, gs1="always")


def test_a_scanned_digital_link_with_a_bad_check_digit_is_refused() -> None:
    with pytest.raises(InvalidGs1Error, match="check digit"):
        parse_line(
            f"]Q1https://id.gs1.org/01/{GTIN[:-1]}7/10/ABC".encode(), device_id="d", received_at=NOW
        )


def test_a_pipe_fnc1_stand_in_does_not_touch_a_uri() -> None:
    uri = f"https://id.gs1.org/01/{GTIN}/10/ABC?context=a|b"
    scan = parse_line(f"]Q1{uri}".encode(), device_id="d", received_at=NOW, fnc1_separator="|")
    assert scan.data == uri
    assert scan.gs1 is not None
    assert scan.gs1.lot == "ABC"


# -- property tests ------------------------------------------------------------------------

# GS1 AI encodable character set 82, which lots and serials are written in.
CSET_82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

GTINS = st.text(alphabet="0123456789", min_size=13, max_size=13).map(
    lambda body: body + gs1_check_digit(body)
)
TEXTS = st.text(alphabet=CSET_82, min_size=1, max_size=20)
# GS1 reads a two-digit year within -49/+50 years of today, so stay well inside that.
EXPIRIES = st.dates(min_value=datetime.date(2010, 1, 1), max_value=datetime.date(2060, 12, 31))
DOMAINS = st.sampled_from(["https://id.gs1.org", "https://brand.example.com/shop", "http://x.cn"])


@settings(max_examples=300, deadline=None)
@given(
    gtin=GTINS,
    lot=TEXTS,
    expiry=EXPIRIES,
    serial=st.none() | TEXTS,
    domain=DOMAINS,
    expiry_in_path=st.booleans(),
)
def test_any_valid_gtin_lot_expiry_reads_the_same_from_both_encodings(
    gtin: str,
    lot: str,
    expiry: datetime.date,
    serial: str | None,
    domain: str,
    expiry_in_path: bool,
) -> None:
    yymmdd = expiry.strftime("%y%m%d")
    element_string = f"01{gtin}17{yymmdd}10{lot}" + (f"{GS}21{serial}" if serial else "")
    path = f"/01/{gtin}/10/{quote(lot, safe='')}"
    if serial:
        path += f"/21/{quote(serial, safe='')}"
    query = {"linkType": "all"}
    if expiry_in_path:
        path += f"/17/{yymmdd}"
    else:
        query["17"] = yymmdd
    uri = f"{domain}{path}?{urlencode(query, quote_via=quote)}"

    from_uri = parse_digital_link(uri)  # a URI's fields are delimited: it always parses
    assert (from_uri.gtin, from_uri.lot, from_uri.serial) == (gtin, lot, serial)
    assert from_uri.expiry == expiry
    scan = parse_line(f"]Q1{uri}".encode(), device_id="d", received_at=NOW)
    assert scan.gs1 == from_uri

    try:
        from_string = parse_gs1(element_string)
    except InvalidGs1Error as exc:
        refusal = str(exc)
    else:
        assert fields(from_string) == fields(from_uri)
        return
    # Without delimiters, a lot that ends in what reads as a further element is refused as
    # a probable lost FNC1; the URI carries no such doubt.
    assert "separator" in refusal
    assume(False)


@settings(max_examples=300, deadline=None)
@given(
    tail=st.text(
        alphabet=st.sampled_from([*CSET_82, "/", "?", "=", "&", "#", "%", " "]), max_size=40
    )
)
def test_arbitrary_digital_link_tails_are_fields_or_a_refusal(tail: str) -> None:
    uri = f"https://id.gs1.org/01/{GTIN}/{tail}"
    try:
        data = parse_digital_link(uri)
    except InvalidGs1Error:
        return
    assert data.gtin == GTIN
    for ai, value in data.elements.items():
        assert value, ai
