"""The transfer fee and amount parsing: every boundary of docs/CHAINCODE.md, checked against devnet's contract too."""

from __future__ import annotations

import pytest

from fabric_client.devnet.chaincode import transfer_fee as devnet_fee
from projector.transfers import MAX_QIRAT, parse_gx_amount, parse_qirat_amount, transfer_fee_qirat

GX = 1_000_000

SAME_NATIONALITY = [
    (1, 0), (2_999_999, 0),  # below 3 GX: free
    (3 * GX, 1_500), (3 * GX + 1, 1_500), (3 * GX + 1_999, 1_500), (3 * GX + 2_000, 1_501),  # 5 bps, floored
    (100 * GX - 1, 49_999), (100 * GX, 50_000),  # 100 GX is still 5 bps
    (100 * GX + 1, 100_000), (150_000_007, 150_000), (500 * GX, 500_000),  # above 100 GX: 10 bps
]
CROSS_BORDER = [
    (1, 0), (666, 0), (667, 1), (999, 1),  # 15 bps floored, whatever the amount
    (GX, 1_500), (3 * GX - 1, 4_499), (3 * GX, 4_500), (100 * GX, 150_000), (100 * GX + 1, 150_000),
    (10_000 * GX, 15_000_000),
]


@pytest.mark.parametrize(("amount", "fee"), SAME_NATIONALITY)
def test_the_fee_between_users_of_one_nationality_follows_the_three_bands(amount, fee):
    assert transfer_fee_qirat(amount_qirat=amount, cross_border=False) == fee
    assert devnet_fee(amount, same_nationality=True) == fee


@pytest.mark.parametrize(("amount", "fee"), CROSS_BORDER)
def test_the_cross_border_fee_is_15_bps_whatever_the_amount(amount, fee):
    assert transfer_fee_qirat(amount_qirat=amount, cross_border=True) == fee
    assert devnet_fee(amount, same_nationality=False) == fee


def test_the_fee_of_a_non_positive_amount_is_an_error():
    with pytest.raises(ValueError):
        transfer_fee_qirat(amount_qirat=0, cross_border=False)


@pytest.mark.parametrize(("text", "qirat"), [
    ("12.5", 12_500_000), ("0.000001", 1), ("1", GX), ("100.000000", 100 * GX), ("0.1", 100_000),
    ("9223372036854.775807", MAX_QIRAT),
])
def test_a_gx_decimal_becomes_exact_qirat(text, qirat):
    assert parse_gx_amount(text) == qirat


@pytest.mark.parametrize("text", [
    "0", "0.0", "0.000000", "0.0000001", "1.1234567", "-1", "+1", "1e3", "1E3", " 1", "1 ", "01", "1.", ".5",
    "1,5", "", "NaN", "Infinity", "9223372036854.775808", "١",
])
def test_a_bad_gx_decimal_is_refused(text):
    with pytest.raises(ValueError):
        parse_gx_amount(text)


@pytest.mark.parametrize("text", ["0", "007", "1.5", "-5", "1e6", "", " 5", str(MAX_QIRAT + 1), "٥"])
def test_a_bad_qirat_string_is_refused(text):
    with pytest.raises(ValueError):
        parse_qirat_amount(text)


def test_qirat_strings_up_to_the_bigint_limit_are_taken():
    assert parse_qirat_amount("1") == 1
    assert parse_qirat_amount(str(MAX_QIRAT)) == MAX_QIRAT
