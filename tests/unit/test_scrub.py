"""The PII scrubber: each type, its near misses, counts, and the messages of whole conversations."""

import datetime as dt

import polars as pl
import pytest

from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.scrub import KINDS, card_valid, iban_valid, luhn_valid, scrub_messages, scrub_text, scrub_texts
from semtel_dagster.core.prepare.tokens import count_tokens
from semtel_dagster.core.prepare.truncate import TruncationConfig
from semtel_dagster.engines import pipeline
from semtel_dagster.engines.pipeline import scrubbed_truncation

REPLACED = [
    ("email", "write to john.doe+news@example.co.uk today", "write to <EMAIL> today"),
    ("email", "Maria_Garcia42@Uni-Heidelberg.DE", "<EMAIL>"),
    ("phone", "call +44 20 7946 0958 now", "call <PHONE> now"),
    ("phone", "+49 (0)30 1234 5678", "<PHONE>"),
    ("phone", "(415) 555-0134", "<PHONE>"),
    ("phone", "my cell is 415-555-0134.", "my cell is <PHONE>."),
    ("phone", "toll free 1-800-555-0199", "toll free <PHONE>"),
    ("phone", "020 7946 0958 or 07700 900123", "<PHONE> or <PHONE>"),
    ("phone", "06 12 34 56 78", "<PHONE>"),
    ("phone", "030 12345678", "<PHONE>"),
    ("card", "card 4111 1111 1111 1111 exp 12/26", "card <CARD> exp 12/26"),
    ("card", "4111-1111-1111-1111", "<CARD>"),
    ("card", "5555555555554444", "<CARD>"),
    ("card", "amex 3782 822463 10005", "amex <CARD>"),
    ("card", "order 9999 4111 1111 1111 1111 done", "order 9999 <CARD> done"),
    ("ip", "server 203.0.113.7:8080 is down", "server <IP>:8080 is down"),
    ("ip", "route 10.0.1.40/27", "route <IP>/27"),
    ("ip", "ping 2001:db8::8a2e:370:7334 and fe80::1", "ping <IP> and <IP>"),
    ("ip", "full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "full <IP>"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN> please"),
    ("iban", "GB82WEST12345698765432", "<IBAN>"),
    ("iban", "DE89370400440532013000 TO ME", "<IBAN> TO ME"),
    ("secret", "key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "key <SECRET>"),
    ("secret", "AKIAIOSFODNN7EXAMPLE", "<SECRET>"),
    ("secret", "ghp_" + "a1B2" * 9, "<SECRET>"),
    ("secret", "xoxb-123456789012-123456789012-abcdefghijkl", "<SECRET>"),
    ("secret", "AIza" + "b" * 35, "<SECRET>"),
    ("secret", "Authorization: Bearer abcdefghijklmnop1234567890", "Authorization: Bearer <SECRET>"),
    ("secret", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic <SECRET>"),
    ("secret", 'password = "hunter22"', 'password = "<SECRET>"'),
    ("secret", '{"api_key": "abc123def456"}', '{"api_key": "<SECRET>"}'),
    ("secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = <SECRET>"),
    (
        "secret",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "jwt <SECRET>",
    ),
    ("secret", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nok", "<SECRET>\nok"),
    ("secret", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAKIAcut", "<SECRET>"),
    ("url_credentials", "clone https://ann:s3cr3t@git.example.com/repo.git", "clone <URL_CREDENTIALS>/repo.git"),
    ("url_credentials", "postgres://admin:pw@db.internal:5432/app", "<URL_CREDENTIALS>/app"),
]

KEPT = [
    ("a 16-digit number failing Luhn is not a card", "ref 4111 1111 1111 1112"),
    ("Luhn-valid, but no card network starts with 1 (a millisecond timestamp)", "at 1700000000007"),
    ("an IBAN with a wrong check", "DE89 3704 0044 0532 0130 01"),
    ("a lowercase IBAN (not the print form)", "de89370400440532013000"),
    ("an ISO date", "on 2024-03-15 at noon"),
    ("a European date", "le 15.03.2024"),
    ("a US date", "due 01/02/2023"),
    ("a time", "at 12:30:45"),
    ("a bare 10-digit number", "id 4155550134"),
    ("a number in a URL", "https://x.com/help?article=000095037"),
    ("a version string with v", "upgrade to v1.2.3.4"),
    ("a version string after 'version'", "version 10.0.0.1 is out"),
    ("a longer dotted chain", "section 1.2.3.4.5"),
    ("loopback", "listen on 127.0.0.1"),
    ("a netmask", "netmask 255.255.255.0"),
    ("C++ scopes", "std::map and abc::def"),
    ("a MAC address", "00:1A:2B:3C:4D:5E"),
    ("a price", "$1,234,567.89"),
    ("a decorator", "@app.route('/x')"),
    ("a kebab-case word after sk-", "sk-8 hoodie"),
    ("prose about a bearer token", "use a Bearer token for that"),
    ("a URL without credentials", "https://example.com/a:b"),
    ("an unquoted password in prose", "password is important"),
]


@pytest.mark.parametrize("kind,text,expected", REPLACED, ids=[f"{k}:{t[:30]}" for k, t, _ in REPLACED])
def test_each_type_is_replaced_by_its_placeholder(kind, text, expected):
    scrubbed, counts = scrub_text(text)
    assert scrubbed == expected
    assert counts[kind] == expected.count(f"<{kind.upper()}>") >= 1
    assert sum(counts.values()) == counts[kind]


@pytest.mark.parametrize("why,text", KEPT, ids=[w for w, _ in KEPT])
def test_near_misses_are_kept(why, text):
    assert scrub_text(text) == (text, dict.fromkeys(KINDS, 0)), why


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert card_valid("378282246310005") and not card_valid("0000000000000000")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB


def test_a_placeholder_already_in_the_text_is_not_counted_again():
    assert scrub_text("was <EMAIL>, now a@b.io") == ("was <EMAIL>, now <EMAIL>", {**dict.fromkeys(KINDS, 0), "email": 1})


def test_many_texts_at_once_keep_order_nulls_and_counts_per_text():
    texts = pl.Series(["nothing", None, "x@y.org and 10.1.2.3", "4111111111111111"] * 20_000, dtype=pl.String)
    scrubbed, counts = scrub_texts(texts)  # more than one parallel slice
    assert scrubbed.len() == counts.height == texts.len()
    assert scrubbed.head(4).to_list() == ["nothing", None, "<EMAIL> and <IP>", "<CARD>"]
    assert counts.head(4).select("email", "ip", "card").rows() == [(0, 0, 0), (0, 0, 0), (1, 1, 0), (0, 0, 1)]
    assert counts.get_column("card").sum() == 20_000


def _conversations(*messages: list[dict]) -> pl.DataFrame:
    return tables.conform(
        pl.DataFrame(
            {"conversation_id": [f"c{i}" for i in range(len(messages))], "messages": list(messages)},
            schema={"conversation_id": pl.String, "messages": tables.CONVERSATIONS["messages"]},
        ).with_columns(
            week_start=pl.lit(dt.date(2026, 11, 16)),
            source=pl.lit("t"),
            started_at=pl.lit(dt.datetime(2026, 11, 16, tzinfo=dt.UTC)),
            n_turns=pl.col("messages").list.len().cast(pl.Int32),
            n_chars=pl.lit(0, pl.Int64),
        ),
        tables.CONVERSATIONS,
    )


def test_scrub_messages_keeps_roles_and_empty_conversations_and_sums_per_conversation():
    conversations = _conversations(
        [{"role": "user", "content": "mail a@b.io"}, {"role": "assistant", "content": "or c@d.io, call +1 415 555 0134"}],
        [],
        [{"role": "user", "content": "hi"}],
    )
    scrubbed, redactions = scrub_messages(conversations)
    assert scrubbed.get_column("messages").to_list() == [
        [{"role": "user", "content": "mail <EMAIL>"}, {"role": "assistant", "content": "or <EMAIL>, call <PHONE>"}],
        [],
        [{"role": "user", "content": "hi"}],
    ]
    assert [(r["email"], r["phone"]) for r in redactions.to_list()] == [(2, 1), (0, 0), (0, 0)]


def test_scrubbing_comes_before_the_cut_so_a_value_the_cut_splits_is_still_replaced():
    conversations = _conversations([{"role": "user", "content": "a " * 3000 + "mail someone.private@example.org" + " b" * 3000}])
    whole = count_tokens("User: " + "a " * 3000 + "mail someone.private@example.org")

    def cut(budget: int, scrub: bool) -> pl.DataFrame:
        return scrubbed_truncation(conversations, config=TruncationConfig(max_tokens=budget, strategy="head"), scrub_pii=scrub)

    # a budget whose cut, without scrubbing, keeps the start of the email and drops its domain
    budget = next(
        b for b in range(whole - 12, whole + 12) if "someone" in (t := cut(b, False).item(0, "transcript")) and "example" not in t
    )
    on, off = cut(budget, True), cut(budget, False)
    assert on.schema == off.schema == tables.CONVERSATIONS_TRUNCATED
    assert "someone" not in on.item(0, "transcript") and on.item(0, "redactions")["email"] == 1
    assert on.item(0, "tokens_after") <= budget and on.item(0, "tokens_after") <= on.item(0, "tokens_before")
    assert off.item(0, "redactions") is None  # not looked for, rather than none found


@pytest.mark.parametrize("scrub", [True, False])
def test_a_week_in_slices_gives_the_rows_of_one_pass(monkeypatch, scrub):
    texts = ["mail a.b@example.org", "call +44 20 7946 0958", "nothing here", "", "word " * 400]
    conversations = _conversations(*([{"role": "user", "content": text}] for text in texts * 3))
    config = TruncationConfig(max_tokens=100)
    whole = scrubbed_truncation(conversations, config=config, scrub_pii=scrub)
    monkeypatch.setattr(pipeline, "_STAGE_ROWS", 4)
    assert scrubbed_truncation(conversations, config=config, scrub_pii=scrub).equals(whole)
