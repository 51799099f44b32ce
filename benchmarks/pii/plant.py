"""Synthetic PII planted into real conversations at known offsets, with a fixed seed.

Every value is made up here (valid checksums where the type has one) and planted inside a sentence
appended to one message; ``near_miss`` plants look like PII but are not (a 16-digit number failing Luhn,
dates, version strings, an IBAN with a wrong check, times, C++ scopes) and measure false positives.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import string
from dataclasses import asdict, dataclass

from semtel_dagster.core.prepare.scrub import IBAN_LENGTHS, PATTERN_KINDS, card_valid, iban_valid, luhn_valid

FIRST = ["john", "maria", "wei", "olga", "ahmed", "lena", "carlos", "yuki", "fatima", "pierre", "anna", "tom"]
LAST = ["smith", "garcia", "chen", "ivanova", "khan", "muller", "rossi", "tanaka", "okafor", "dubois", "berg", "lee"]
DOMAINS = ["gmail.com", "outlook.com", "example.org", "company.co.uk", "uni-heidelberg.de", "mail.ru", "proton.me"]


# Planted forms outside what the scrubber replaces (its docstring says why): measured as misses.
KNOWN_MISSES = frozenset({"phone/bare_10", "card/visa_dots", "iban/lowercase", "secret/hex_token"})


@dataclass(frozen=True)
class Plant:
    conversation_id: str
    message: int  # index of the message whose content holds the value
    start: int  # character offsets of the value in that content, after planting
    end: int
    kind: str  # a scrubber type, or "near_miss"
    form: str  # which format of the type
    value_sha: str  # sha256 of the value, first 16 hex digits: the set is checked without storing values

    def as_dict(self) -> dict:
        return asdict(self)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    for check in string.digits:
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always completes Luhn")


def _grouped(text: str, sizes: list[int], sep: str) -> str:
    out, at = [], 0
    for size in sizes:
        out.append(text[at : at + size])
        at += size
    return sep.join(out)


def _iban(rng: random.Random, country: str) -> str:
    """A valid IBAN: a bank code of capitals where the country uses one (GB, NL), digits otherwise."""
    letters = {"GB": 4, "NL": 4}.get(country, 0)
    bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(letters)) + _digits(rng, IBAN_LENGTHS[country] - 4 - letters)
    for check in range(2, 99):
        candidate = f"{country}{check:02d}{bban}"
        if iban_valid(candidate):
            return candidate
    raise AssertionError("unreachable: mod 97 has a solution among 02-98")


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def value(kind: str, rng: random.Random) -> tuple[str, str]:
    """(form, value) of a made-up value of ``kind``."""
    if kind == "email":
        sep = rng.choice([".", "_", ""])
        local = rng.choice(FIRST) + sep + rng.choice(LAST) + rng.choice(["", str(rng.randint(1, 99))])
        return "plain", f"{local}@{rng.choice(DOMAINS)}"
    if kind == "phone":
        form = rng.choice(
            ["intl", "intl_trunk", "nanp_paren", "nanp_dash", "nanp_dot", "uk", "uk_mobile", "fr", "de", "toll_free", "bare_10"]
        )
        area = str(rng.randint(201, 989))
        return form, {
            "intl": f"+{rng.choice(['44', '49', '33', '34', '91', '61'])} {_digits(rng, 2)} {_digits(rng, 4)} {_digits(rng, 4)}",
            "nanp_paren": f"({area}) {_digits(rng, 3)}-{_digits(rng, 4)}",
            "nanp_dash": f"{area}-{_digits(rng, 3)}-{_digits(rng, 4)}",
            "nanp_dot": f"+1 {area}.{_digits(rng, 3)}.{_digits(rng, 4)}",
            "uk": f"020 {_digits(rng, 4)} {_digits(rng, 4)}",
            "uk_mobile": f"07{_digits(rng, 3)} {_digits(rng, 6)}",
            "fr": "0" + str(rng.randint(1, 9)) + "".join(f" {_digits(rng, 2)}" for _ in range(4)),
            "de": f"0{rng.randint(30, 89)} {_digits(rng, 8)}",
            "toll_free": f"1-800-{_digits(rng, 3)}-{_digits(rng, 4)}",
            "intl_trunk": f"+49 (0)30 {_digits(rng, 4)} {_digits(rng, 4)}",
            "bare_10": area + _digits(rng, 7),  # outside the scrubber's formats: measured as a known miss
        }[form]
    if kind == "card":
        form = rng.choice(["visa_spaces", "visa_plain", "mastercard_dashes", "amex", "visa_dots"])
        if form == "amex":
            return form, _grouped(_luhn_complete(rng.choice(["34", "37"]), 15, rng), [4, 6, 5], " ")
        number = _luhn_complete("4" if form.startswith("visa") else str(rng.randint(51, 55)), 16, rng)
        assert card_valid(number)
        return form, {
            "visa_spaces": _grouped(number, [4] * 4, " "),
            "visa_plain": number,
            "visa_dots": _grouped(number, [4] * 4, "."),
        }.get(form) or _grouped(number, [4] * 4, "-")
    if kind == "ip":
        if rng.random() < 0.15:
            return (
                "v4_port",
                f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            )  # the port follows outside the span
        if rng.random() < 0.7:
            return "v4", ".".join(str(rng.randint(1, 223) if i == 0 else rng.randint(0, 255)) for i in range(4)).replace(
                "127.", "128.", 1
            )
        groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        return ("v6_full", ":".join(groups)) if rng.random() < 0.5 else ("v6_short", f"2001:db8::{groups[0]}:{groups[1]}")
    if kind == "iban":
        iban = _iban(rng, rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "CH"]))
        if rng.random() < 0.1:
            return "lowercase", iban.lower()  # outside the scrubber's formats: measured as a known miss
        return ("grouped", " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))) if rng.random() < 0.6 else ("compact", iban)
    if kind == "secret":
        form = rng.choice(["openai", "aws", "github", "slack", "jwt", "bearer", "password", "private_key", "hex_token"])
        b64 = string.ascii_letters + string.digits + "-_"
        return form, {
            "openai": "sk-proj-" + _token(rng, 40, b64),
            "aws": "AKIA" + _token(rng, 16, string.ascii_uppercase + string.digits),
            "github": "ghp_" + _token(rng, 36),
            "slack": f"xoxb-{_digits(rng, 12)}-{_digits(rng, 12)}-{_token(rng, 24)}",
            "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJ" + _token(rng, 30, b64) + "." + _token(rng, 43, b64),
            "bearer": _token(rng, 32, b64),  # after "Authorization: Bearer " (the key word stays)
            "password": _token(rng, 12),  # inside password = "..."
            "hex_token": _token(rng, 32, "0123456789abcdef"),  # a bare hex token: outside the scrubber's shapes
            "private_key": "-----BEGIN PRIVATE KEY-----\n"
            + "\n".join(_token(rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(3))
            + "\n-----END PRIVATE KEY-----",
        }[form]
    if kind == "url_credentials":
        user, password = rng.choice(FIRST), _token(rng, 10)
        host = rng.choice(["db.internal", "git.example.com", "ftp.files.net", "api.service.io:8443"])
        scheme = rng.choice(["https", "postgres", "mongodb", "ftp"])
        return scheme, f"{scheme}://{user}:{password}@{host}"  # the path follows outside the span
    if kind == "name":
        return "first_last", f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"
    if kind == "near_miss":
        form = rng.choice(
            [
                "luhn_failing_16",
                "iso_date",
                "eu_date",
                "us_date",
                "version4",
                "dotted5",
                "bad_iban",
                "time",
                "cpp_scope",
                "timestamp_ms",
                "price",
            ]
        )
        if form == "luhn_failing_16":
            number = _luhn_complete("4", 16, rng)
            number = number[:-1] + str((int(number[-1]) + 1) % 10)
            return form, _grouped(number, [4] * 4, " ")
        if form == "bad_iban":
            iban = _iban(rng, "DE")
            return form, iban[:-1] + str((int(iban[-1]) + 1) % 10)
        return form, {
            "iso_date": f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "eu_date": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.20{rng.randint(10, 29)}",
            "us_date": f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/20{rng.randint(10, 29)}",
            "version4": f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
            "dotted5": ".".join(str(rng.randint(1, 30)) for _ in range(5)),
            "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            "cpp_scope": rng.choice(["std::vector", "std::map", "boost::asio", "abc::def"]),
            "timestamp_ms": "17" + _digits(rng, 11),
            "price": f"${rng.randint(1, 999)},{_digits(rng, 3)}.{_digits(rng, 2)}",
        }[form]
    raise ValueError(f"unknown kind {kind!r}")


TEMPLATES = {
    "email": ["My email is {}.", "You can write to {} if needed.", "contact: {}"],
    "phone": ["Call me at {} tomorrow.", "My number is {}.", "phone: {}"],
    "card": ["My card number is {} if you need it.", "I paid with {} last week.", "card {} exp 09/27"],
    "ip": ["The server is at {} and it keeps timing out.", "I connect from {} every day.", "host {} port 22"],
    "iban": ["Please send it to IBAN {} by Friday.", "My account: {}", "IBAN: {}"],
    "secret": ["Here is my key {} so you can test it.", "export TOKEN={}", "config:\n{}\nend"],
    "url_credentials": ["I clone from {} every morning.", "The connection string is {}", "url = {}"],
    "near_miss": ["The reference is {} as noted.", "See {} for details.", "It says {} there."],
    "name": ["My name is {}.", "Thanks, {}", "Please forward this to {} in accounting."],
}


# Forms whose value sits in a fixed context: the key word a secret follows, the port or path after an address.
CONTEXT = {
    "bearer": "Authorization: Bearer {}",
    "password": 'password = "{}"',
    "v4_port": "{}:8080",
    **{
        scheme: "{}/" + path for scheme, path in [("https", "repo.git"), ("postgres", "app"), ("mongodb", "data"), ("ftp", "pub")]
    },
}


def plant_value(content: str, kind: str, rng: random.Random) -> tuple[str, int, int, str, str]:
    """(content with a sentence holding the value appended, value start, value end, form, value)."""
    form, text = value(kind, rng)
    template = rng.choice(TEMPLATES[kind]).replace("{}", CONTEXT.get(form, "{}"))
    before, _, after = template.partition("{}")
    head = content.rstrip() + ("\n\n" if rng.random() < 0.5 else " ") + before
    return head + text + after, len(head), len(head) + len(text), form, text


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plant(conversations: list[dict], kinds: list[str], seed: int) -> tuple[list[dict], list[Plant]]:
    """One plant per conversation, the kinds in turn (``kinds`` repeated), in a message drawn by the seed.
    Returns (the planted conversations, the plants)."""
    rng = random.Random(seed)
    planted, plants = [], []
    for i, conversation in enumerate(conversations):
        kind = kinds[i % len(kinds)]
        messages = [dict(m) for m in conversation["messages"]]
        index = rng.randrange(len(messages))
        content, start, end, form, text = plant_value(messages[index]["content"], kind, rng)
        messages[index]["content"] = content
        planted.append({**conversation, "messages": messages})
        plants.append(Plant(conversation["conversation_id"], index, start, end, kind, form, sha(text)))
    return planted, plants


def planted_sample(n: int, seed: int = 7) -> tuple[list[dict], list[str]]:
    """``n`` conversations of the seeded generator, each with one planted value of a scrubber type in turn,
    and the values the scrubber is meant to catch (``KNOWN_MISSES`` aside). For tests: no shared data needed."""
    from semtel_dagster.sim.sample import generate_week

    records = []
    for line in generate_week(dt.date(2026, 11, 16), n=n + 20, seed=seed).records:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # the generator's deliberately malformed lines
        if isinstance(record, dict) and record.get("conversation_id") and record.get("messages"):
            records.append({"conversation_id": record["conversation_id"], "messages": record["messages"]})
    unique = list({r["conversation_id"]: r for r in records}.values())[:n]
    planted, plants = plant(unique, list(PATTERN_KINDS), seed)
    values = [
        c["messages"][p.message]["content"][p.start : p.end]
        for c, p in zip(planted, plants)
        if f"{p.kind}/{p.form}" not in KNOWN_MISSES
    ]
    return planted, values
