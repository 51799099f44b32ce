"""PII scrubbing: personal data and secrets in conversation text replaced by typed placeholders.

What a classifier needs survives (that the user gave an email, pasted a key, asked about a card); the
value does not. Placeholders: ``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<IP>``, ``<IBAN>``, ``<SECRET>``,
``<URL_CREDENTIALS>``, and ``<NAME>`` where names are asked for (a model, ``core.prepare.names``).

Speed: every pass is a Polars string expression (Rust regex) over the whole column. Types a pattern
decides alone (emails, secrets, URLs with credentials) are replaced by Rust; for the others a Rust
pattern only flags candidate texts, and Python's ``re`` (lookarounds, which Rust's regex lacks) with a
validator runs on those few: Luhn and issuer ranges for cards, ISO 7064 mod 97 and the country's length
for IBANs, octets and context for IPs, digit counts and neighbouring digit groups for phones.

Decisions (tests/unit/test_scrub.py holds an example of each):
- a 13-19 digit number is a card only if it passes Luhn *and* starts like a card network's number (a
  13-digit millisecond timestamp that happens to pass Luhn is not a card);
- a dotted quad is an IP when every octet is 0-255 and it is not part of a longer dotted chain
  (``1.2.3.4.5``) or preceded by a version word (``v1.2.3.4``, ``version 1.2.3.4``, ``build``, ``release``,
  ``section``); loopback, unspecified, broadcast and netmasks (``127.0.0.1``, ``0.0.0.0``,
  ``255.255.255.0``) identify no one and are kept; IPv6 needs a digit and two groups (``std::map`` and
  ``12:30:45`` are not addresses);
- phones: ``+`` and 8-15 digits; North American ``(415) 555-0134`` / ``415-555-0134`` / ``1-800-555-0199``
  (separators required: a bare 10-digit number is not taken); national numbers with a trunk 0 and 9-12
  digits (``020 7946 0958``, ``06 12 34 56 78``, ``030 12345678``). Dates (``2024-03-15``,
  ``15.03.2024``, ``01/02/2023``), digit groups inside longer chains and numbers in a URL
  (``?article=000095037``) are not phones;
- IBANs in capitals only (the usual print form), grouped by 4 or not;
- secrets by the provider's own key shape (``sk-``, ``AKIA``, ``ghp_``, ``xox?-``, ``AIza``, ``glpat-``,
  ``hf_``, ``npm_``, Stripe), JWTs, the token after ``Bearer``/``Basic``, private key blocks, and a quoted
  value assigned to a key-like name (``password = "..."``, ``"api_key": "..."``). The key word stays.

Counts: a placeholder present in the input already (a text scrubbed before) is not counted again.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import narwhals.stable.v2 as nw
import polars as pl

from semtel_dagster.core.lake.frames import summary

PATTERN_KINDS = ("email", "phone", "card", "ip", "iban", "secret", "url_credentials")
KINDS = (*PATTERN_KINDS, "name")  # name: only with ``names`` (a model, core.prepare.names)
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in KINDS}


@dataclass(frozen=True)
class Replace:
    """A type a pattern decides alone: Rust ``replace_all`` (``${n}`` keeps a captured key word)."""

    kind: str
    pattern: str
    replacement: str


@dataclass(frozen=True)
class Validate:
    """A type that needs more than a pattern: ``candidate`` (Rust) flags the texts, then ``exact`` (Python,
    with lookarounds) finds the spans and ``replace`` gives each span's text: the placeholder or itself."""

    kind: str
    candidate: str
    exact: re.Pattern
    replace: Callable[[re.Match], str]


# ---- secrets and URLs with credentials (Rust only) -------------------------------------------------------

_B = r"(?-u:\b)"  # ASCII word boundary: keeps Rust's fast DFA on non-ASCII text
_PRIVATE_KEY = (
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:\s*[A-Za-z0-9+/=:,-]{4,})*)"  # a block cut short: its base64 lines
)
_URL_CREDENTIALS = _B + r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:<>\"'`]+:[^\s/?#@<>\"'`]+@[^\s/?#@<>\"'`:]+(?::[0-9]+)?"
_KEY_NAMES = (
    r"api[_-]?key|apikey|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|refresh[_-]?token"
    r"|private[_-]?key|password|passwd|pwd|secret"
)
_SECRETS = "|".join(
    [
        r"(" + _B + r"[Bb]earer\s+)[A-Za-z0-9._~+/-]{16,}=*",  # ${1}
        r"(" + _B + r"Authorization:\s*Basic\s+)[A-Za-z0-9+/]{12,}={0,2}",  # ${2}
        r"((?i:" + _B + r"(?:" + _KEY_NAMES + r")" + _B + r")[\"']?\s*[:=]\s*[\"'])[^\"'\s<>]{6,}([\"'])",  # ${3} ${4}
        r"((?i:" + _B + r"aws_secret_access_key" + _B + r")[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}",  # ${5}
        _B + r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        _B + r"[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
        _B + r"(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[A-Z0-9]{16}" + _B,
        _B + r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}" + _B,
        _B + r"github_pat_[A-Za-z0-9_]{22,255}" + _B,
        _B + r"glpat-[A-Za-z0-9_-]{20,}",
        _B + r"xox[abposre]-[A-Za-z0-9-]{10,}",
        r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
        _B + r"AIza[0-9A-Za-z_-]{35}",
        _B + r"hf_[A-Za-z]{30,}" + _B,
        _B + r"npm_[A-Za-z0-9]{36}" + _B,
        _B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWT: base64 of '{"' twice
    ]
)
_SECRET = PLACEHOLDERS["secret"]
_EMAIL = (
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}" + _B
)

# ---- IBAN -------------------------------------------------------------------------------------------------

# Length of each country's IBAN (ISO 13616 registry).
IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
}
_IBAN_CORE = r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}"


def iban_valid(compact: str) -> bool:
    """ISO 7064 mod 97-10 over the IBAN moved to end with letters as numbers, and the country's length."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    digits = "".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def _iban(match: re.Match) -> str:
    """The IBAN is the first ``length`` characters (spaces aside) of the candidate, which may run on into
    the next capitals; it must end at a space or the candidate's end."""
    text = match.group(0)
    length = IBAN_LENGTHS.get(text[:2])
    if length is None:
        return text
    seen, end = 0, 0
    while end < len(text) and seen < length:  # the end of the first ``length`` non-space characters
        seen += text[end] != " "
        end += 1
    head, rest = text[:end], text[end:]
    if seen != length or (rest and not rest.startswith(" ")) or not iban_valid(head.replace(" ", "")):
        return text
    return PLACEHOLDERS["iban"] + rest


# ---- cards ------------------------------------------------------------------------------------------------

_CARD_CORE = r"[0-9](?:[ -]?[0-9]){12,18}"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def card_network(digits: str) -> bool:
    """Starts like a number of a card network, at a length that network issues."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))
        or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)  # Mastercard
        or (two in (34, 37) and n == 15)  # American Express
        or (two in (30, 36, 38, 39) and 14 <= n <= 19)  # Diners
        or (two == 35 and 16 <= n <= 19)  # JCB
        or ((digits[0] == "6" or two in (50, 56, 57, 58)) and 16 <= n <= 19)  # Discover, UnionPay, Maestro
    )


def card_valid(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and card_network(digits) and luhn_valid(digits)


def _card(match: re.Match) -> str:
    """Cards among the candidate's digit groups: a chain of groups may hold a card and more (an expiry
    after it, ``4111 1111 1111 1111 12 26``, an order number before it). Longest card first, from the left."""
    text = match.group(0)
    groups = [(m.start(), m.end()) for m in re.finditer(r"[0-9]+", text)]
    out, done, i = [], 0, 0
    while i < len(groups):
        found = None
        digits = ""
        for j in range(i, len(groups)):
            digits += text[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and card_valid(digits):
                found = j
        if found is None:
            i += 1
            continue
        out += [text[done : groups[i][0]], PLACEHOLDERS["card"]]
        done, i = groups[found][1], found + 1
    return "".join(out) + text[done:] if out else text


# ---- IP addresses -----------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_EXACT = re.compile(r"(?<![A-Za-z0-9_.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?![A-Za-z0-9_]|\.[0-9])")
_IPV4_CANDIDATE = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
_VERSION_WORD = re.compile(r"(?i)(?:\bv|\bver|\bversion|\brelease|\bbuild|\bsection|\bchapter|§)[ .:]*$")
_HEX = r"[0-9A-Fa-f]"
_IPV6_EXACT = re.compile(
    r"(?<![A-Za-z0-9_:.])(?:" + _HEX + r"{0,4}:){2,7}(?:" + _HEX + r"{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![A-Za-z0-9_:])"
)
_IPV6_CANDIDATE = _HEX + r"{0,4}:" + _HEX + r"{0,4}:"


def _kept_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses that identify no one: loopback, unspecified, broadcast, netmasks."""
    if address.is_loopback or address.is_unspecified:
        return True
    if isinstance(address, ipaddress.IPv4Address):
        bits = int(address)
        inverted = ~bits & 0xFFFFFFFF
        return bits >> 24 == 255 and inverted & (inverted + 1) == 0  # 255.x.x.x with contiguous ones
    return False


def _ipv4(match: re.Match) -> str:
    text = match.group(0)
    before = match.string[max(0, match.start() - 12) : match.start()]
    if _VERSION_WORD.search(before) or _kept_address(ipaddress.IPv4Address(text)):
        return text
    return PLACEHOLDERS["ip"]


def _ipv6(match: re.Match) -> str:
    text = match.group(0)
    groups = [g for g in text.split(":") if g]
    if not any(ch.isdigit() for ch in text) or len(groups) < 2 or ("::" not in text and text.count(":") != 7):
        return text
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return text if _kept_address(address) else PLACEHOLDERS["ip"]


# ---- phones -----------------------------------------------------------------------------------------------

_INTERNATIONAL = r"\+[1-9][0-9]{0,2}(?:[ .-]?\([0-9]{1,4}\)|[ .-]?[0-9]{1,4}){1,6}"
_NORTH_AMERICAN = r"(?:1[ .-])?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}"
_NATIONAL = r"0[0-9]{1,4}(?:[ ./-]?[0-9]{2,4}){1,4}"
_PHONE_EXACT = re.compile(
    r"(?<![A-Za-z0-9_+(=/#&?])(?<![0-9][ .\-/])(?:(?P<intl>" + _INTERNATIONAL + r")|(?P<na>" + _NORTH_AMERICAN + r")"
    r"|(?P<national>" + _NATIONAL + r"))(?![A-Za-z0-9_]|[ .\-/]?[0-9])"
)
_PHONE_CANDIDATE = "|".join([_INTERNATIONAL, _NORTH_AMERICAN, _NATIONAL])
_PHONE_DIGITS = {"intl": (8, 15), "na": (10, 11), "national": (9, 12)}


def _phone(match: re.Match) -> str:
    text = match.group(0)
    digits = re.sub(r"[^0-9]", "", text)
    low, high = _PHONE_DIGITS[match.lastgroup or "intl"]
    if not low <= len(digits) <= high or len(set(digits)) == 1:
        return text
    return PLACEHOLDERS["phone"]


# Order matters: a key block or a URL's password holds what later rules would take for other types; cards
# and IBANs go before phones, whose digit groups they contain. Placeholders hold no digit, '@' or ':'.
RULES: tuple[Replace | Validate, ...] = (
    Replace("secret", _PRIVATE_KEY, _SECRET),
    Replace("url_credentials", _URL_CREDENTIALS, PLACEHOLDERS["url_credentials"]),
    Replace("secret", _SECRETS, "${1}${2}${3}${5}" + _SECRET + "${4}"),
    Replace("email", _EMAIL, PLACEHOLDERS["email"]),
    Validate("iban", _IBAN_CORE, re.compile(r"(?<![A-Za-z0-9_])" + _IBAN_CORE), _iban),
    Validate(
        "card",
        _CARD_CORE,
        # A chain of digit groups; the lookahead skips, unseen by ``_card``, those too short to hold a card's 13 digits.
        re.compile(r"(?<![0-9A-Za-z_.\-])(?=[0-9 \-]{13})[0-9]+(?:[ -][0-9]+)*(?![0-9A-Za-z_]|[.\-][0-9])"),
        _card,
    ),
    Validate("ip", _IPV4_CANDIDATE, _IPV4_EXACT, _ipv4),
    Validate("ip", _IPV6_CANDIDATE, _IPV6_EXACT, _ipv6),
    Validate("phone", _PHONE_CANDIDATE, _PHONE_EXACT, _phone),
)


_SLICE_TEXTS = 32_768  # texts per slice of the Rust pass: slices run in parallel, one per core


_VALIDATED = tuple(rule for rule in RULES if isinstance(rule, Validate))


def _rust_pass(texts: pl.Series) -> pl.DataFrame:
    """``text`` after every rule Rust decides alone, and per validated rule a column ``candidate_<i>``: its
    candidate is in the text (``_VALIDATED[i]``).

    One lazy query over slices of the column, which Polars runs on every core (an eager string call runs on one).
    Flags taken before the validated types are replaced are a superset of those taken after: their
    placeholders hold no digit, so replacing a value never makes a candidate of another type.
    """
    text = pl.col("text")
    for rule in RULES:
        if isinstance(rule, Replace):
            text = text.str.replace_all(rule.pattern, rule.replacement)
    candidates = [
        pl.col("text").str.contains(rule.candidate).fill_null(False).alias(f"candidate_{i}") for i, rule in enumerate(_VALIDATED)
    ]
    slices = [
        pl.LazyFrame({"text": texts.slice(start, _SLICE_TEXTS)}).select(text.alias("text"), *candidates)
        for start in range(0, max(texts.len(), 1), _SLICE_TEXTS)
    ]
    return pl.concat(slices, parallel=True).collect()


def scrub_texts(texts: pl.Series, names: bool = False) -> tuple[pl.Series, pl.DataFrame]:
    """(scrubbed texts, one row of counts per text with a column per type in ``KINDS``). Nulls stay null.
    ``names``: person names too, by the named-entity model of the ``pii-ner`` extra (slow)."""
    texts = texts.cast(pl.String)
    passed = _rust_pass(texts)
    scrubbed = passed.get_column("text")
    flagged = passed.select(pl.any_horizontal(pl.exclude("text"))).to_series().arg_true()
    if flagged.len():  # Python: each validated type, in rule order, on the texts holding its candidate only
        fixed = scrubbed.gather(flagged).to_list()
        for i, rule in enumerate(_VALIDATED):
            wanted = passed.get_column(f"candidate_{i}").gather(flagged).to_list()
            fixed = [rule.exact.sub(rule.replace, text) if want else text for text, want in zip(fixed, wanted)]
        scrubbed = scrubbed.clone().scatter(flagged, pl.Series(fixed, dtype=pl.String))
    if names:
        from semtel_dagster.core.prepare.names import scrub_names

        scrubbed, _ = scrub_names(scrubbed)
    zeros = pl.Series(values=[0] * texts.len(), dtype=pl.Int32)
    counts = pl.DataFrame({kind: zeros for kind in KINDS})
    changed = (scrubbed != texts).fill_null(False).arg_true()
    if changed.len():
        before, after = texts.gather(changed), scrubbed.gather(changed)
        found = {
            kind: (after.str.count_matches(mark, literal=True) - before.str.count_matches(mark, literal=True)).cast(pl.Int32)
            for kind, mark in PLACEHOLDERS.items()
        }
        counts = pl.DataFrame({kind: zeros.clone().scatter(changed, found[kind]) for kind in KINDS})
    return scrubbed.rename(texts.name), counts


def scrub_text(text: str) -> tuple[str, dict[str, int]]:
    """One text: (scrubbed, counts by type)."""
    scrubbed, counts = scrub_texts(pl.Series([text], dtype=pl.String))
    return scrubbed.item(), counts.row(0, named=True)


def scrub_messages(conversations: pl.DataFrame, names: bool = False) -> tuple[pl.DataFrame, pl.Series]:
    """Every message's content scrubbed, all messages of all conversations at once; and per conversation
    the counts, a struct of ``KINDS`` (``tables.REDACTIONS``; ``name`` is null unless ``names``)."""
    flat = conversations.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), "messages").explode(
        "messages", empty_as_null=False
    )
    message = flat.get_column("messages")
    content, counts = scrub_texts(message.struct.field("content"), names)
    flat = pl.DataFrame(
        {
            "row": flat.get_column("row"),
            "messages": pl.DataFrame({"role": message.struct.field("role"), "content": content}).to_struct(),
        }
    ).hstack(counts)
    grouped = flat.group_by("row", maintain_order=True).agg(pl.col("messages"), *[pl.col(k).sum() for k in KINDS])
    every = pl.DataFrame({"row": pl.int_range(conversations.height, dtype=pl.UInt32, eager=True)})
    joined = every.join(grouped, on="row", how="left", maintain_order="left").with_columns(
        pl.col("messages").fill_null(pl.lit([], dtype=conversations.schema["messages"])),
        *[pl.col(k).fill_null(0).cast(pl.Int32) for k in KINDS],
    )
    if not names:
        joined = joined.with_columns(name=pl.lit(None, pl.Int32))  # not looked for
    redactions = joined.select(pl.struct(KINDS).alias("redactions")).to_series()
    return conversations.with_columns(messages=joined.get_column("messages").cast(conversations.schema["messages"])), redactions


def redaction_totals(truncated) -> dict[str, int]:
    """Values replaced per type over ``conversations_truncated`` rows, counted where the frame lives
    (Polars, or Spark)."""
    totals = summary(truncated, **{kind: nw.col("redactions").struct.field(kind).cast(nw.Int64).sum() for kind in KINDS})
    return {kind: int(totals[kind] or 0) for kind in KINDS}
