"""PII and secrets: personal details, payment data and credentials a trace should never carry.

Kinds (the ``kinds`` option chooses among them):

- ``email``: an address whose domain ends in a public suffix (``x@self.weights`` in numpy code is
  no address), or one spelled out to dodge filters (``jane [at] mail [dot] com``, ``jane at mail
  dot com``).
- ``phone``: international (``+44 20 7946 0958``), North American (``(415) 555-2671``,
  ``415.555.2671``, ``1-800-555-0199``, and the made-up ``123-456-7890``), a leading-zero national
  number (``020 7946 0958``), 7 to 15 digits right after a word that names a phone (phone, tel,
  mobile, fax), or digits split in groups (or 10 or 11 long) after one that asks to call (call,
  text, contact, reach, cell). Calculator annotations (``<<48/2=24>>``) are blanked first;
  arithmetic, times, dates, years, money and a lone ``555`` do not match.
- ``card``: 13 to 19 digits in groups split by spaces or dashes, or run together from 2 to 6
  (the card networks' first digits), that pass the Luhn check; or four groups of four digits,
  which no clean number is written as.
- ``iban``: a country code, two check digits and 11 to 30 letters or digits that pass the mod-97
  check. ``ssn``: a US social security number written ``123-45-6789``, or after "SSN" or "social
  security number" with spaces or none (zero groups excluded). ``id_document``: a passport,
  driver's licence or national ID number named as such (``Passport number RA2524897``).
- ``secret``: API keys and tokens by their shapes (detect-secrets' plugins, in-process: AWS,
  GitHub, GitLab, Slack, Stripe, OpenAI, private-key headers, JWTs that decode, credentials in a
  URL, and more; plus ``sk-...`` keys of any provider, Google ``AIza...``, Hugging Face ``hf_...``
  and ``Bearer`` tokens). The high-entropy-string plugins are left out: they flag 3 of the 164
  clean HumanEval solutions with their tests (hex digests, long test strings), over the 1% budget.
- ``password``: a hard-coded credential: detect-secrets' keyword plugin (``password = "..."``,
  ``api_key: "..."``) and the same said in prose (``the password is Tr0ub4dor&3``); the value must
  look like one (no spaces, four characters at least; in prose, a digit or a symbol in it).

Only the kind and the span are recorded (``email at 120-141``); the matched text never is, in any
column. A value the prompt already holds (its digits, for numbers) is not held against the trace
when ``allow_prompt`` is on: a problem about a phone bill may quote the number it bills.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import pyarrow as pa
from detect_secrets.plugins import (
    artifactory,
    aws,
    azure_storage_key,
    basic_auth,
    discord,
    github_token,
    gitlab_token,
    jwt,
    mailchimp,
    npm,
    openai,
    private_key,
    pypi_token,
    sendgrid,
    slack,
    square_oauth,
    stripe,
    telegram_token,
    twilio,
)
from detect_secrets.plugins.keyword import KeywordDetector

from tracebank.errors import TracebankError
from tracebank.filters.safety.safety import prompt_text, safety_result

KINDS = ("email", "phone", "card", "iban", "ssn", "id_document", "secret", "password")
Span = tuple[int, int]

# detect-secrets plugins whose patterns are specific enough for prose and code, by the kind named
# in evidence. Each plugin's `denylist` is run with finditer, so a match has a span.
SECRET_PLUGINS = {
    "aws_access_key": aws.AWSKeyDetector,
    "artifactory_token": artifactory.ArtifactoryDetector,
    "azure_storage_key": azure_storage_key.AzureStorageKeyDetector,
    "url_credentials": basic_auth.BasicAuthDetector,
    "discord_token": discord.DiscordBotTokenDetector,
    "github_token": github_token.GitHubTokenDetector,
    "gitlab_token": gitlab_token.GitLabTokenDetector,
    "jwt": jwt.JwtTokenDetector,
    "mailchimp_key": mailchimp.MailchimpDetector,
    "npm_token": npm.NpmDetector,
    "openai_key": openai.OpenAIDetector,
    "private_key": private_key.PrivateKeyDetector,
    "pypi_token": pypi_token.PypiTokenDetector,
    "sendgrid_key": sendgrid.SendGridDetector,
    "slack_token": slack.SlackDetector,
    "square_secret": square_oauth.SquareOAuthDetector,
    "stripe_key": stripe.StripeDetector,
    "telegram_token": telegram_token.TelegramBotTokenDetector,
    "twilio_key": twilio.TwilioKeyDetector,
}
# Plugins whose pattern's first group is the secret in its context (`aws...key = "..."`, `://user:pw@`).
VALUE_GROUP = ("aws_access_key", "url_credentials", "npm_token")
EXTRA_SECRETS = {
    "api_key": re.compile(r"(?<![\w-])sk-(?:[a-z]{2,8}-)*[A-Za-z0-9_-]{20,}"),  # OpenAI, Anthropic, ...
    "google_api_key": re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}"),
    "huggingface_token": re.compile(r"(?<![\w-])hf_[A-Za-z0-9]{30,}"),
    "stripe_key": re.compile(r"(?<![\w-])[rs]k_test_[0-9A-Za-z]{24,}"),
    "bearer_token": re.compile(r"\bBearer\s+([A-Za-z0-9._~+/-]{20,}=*)"),
}

TLD_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9-]{1,63})*\.([A-Za-z]{2,24})(?![\w-])"
)
_AT = r"(?:\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+|\.)"
SPELLED_EMAIL = re.compile(rf"(?<![\w.])[A-Za-z0-9][\w.+-]*{_AT}[A-Za-z0-9][\w-]*(?:{_DOT}[A-Za-z0-9][\w-]*)+", re.I)
SPELLED_MARK = re.compile(r"[\[({<]\s*(?:at|dot)\s*[\])}>]|\sdot\s", re.I)
PHONES = (
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}(?!\d)"),  # +44 20 7946 0958
    re.compile(r"(?<![\w.$/-])(?:1[ .-]?)?(?:\(\d{3}\) ?\d{3}[ .-]|\d{3}([.-])\d{3}\1)\d{4}(?![\d])(?![.-]\d)"),  # US
    re.compile(r"(?<![\w.$/-])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?![\d])(?![.-]\d)"),  # 020 7946 0958
)
PAIRS = re.compile(r"\+\d{1,3}[ .-]\d(?:[ .-]\d\d){4}")
# A word that names a phone (strong: any run of digits after it counts), or asks to call (weak: the
# digits must be split in groups or be 10 or 11 long, so "let's call the total 1250000" is no number).
PHONE_CUE = re.compile(
    r"\b(?:(?P<strong>(?:tele)?phone|tel|mobile|cell ?phone|fax|whatsapp|sms)"
    r"|call|text|contact|reach|ring|dial|cell)\b[^\d\n$€£]{0,25}?(\+?\(?\d[\d ().-]{5,20}\d)(?![\d.,]\d)",
    re.I,
)
CARD = re.compile(r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w-]|[.,]\d)")
FOUR_FOURS = re.compile(r"\d{4}([ -])\d{4}\1\d{4}\1\d{4}")
IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w-])")
SSN = re.compile(r"(?<![\w.-])(\d{3})-(\d{2})-(\d{4})(?![\w-]|[.,]\d)")
SSN_CUE = re.compile(r"\b(?:SSN|social security (?:number|no\.?|#))\D{0,15}?(\d{3}) ?(\d{2}) ?(\d{4})(?![\w-])", re.I)
# A passport, driver's licence or national ID number named as such: the cue, then 6-12 letters and
# digits with at least one digit ("Passport number RA2524897", "licence no. D1234-5678").
ID_DOCUMENT = re.compile(
    r"\b(?:passport|driver'?s?\s+licen[cs]e|driving\s+licen[cs]e|national\s+id(?:entity)?(?:\s+card)?|id\s+card)"
    r"(?:\s+(?:number|no\.?|num|#))?\s*[:#]?\s*(?=[A-Z0-9-]*\d)([A-Z0-9][A-Z0-9-]{5,11})\b",
    re.I,
)
CALCULATOR = re.compile(r"<<[^<>\n]*>>")
KEYWORD_CUE = re.compile(r"pass|pwd|secret|key|token|auth|credential|api", re.I)
PROSE_PASSWORD = re.compile(
    r"(?<![A-Za-z])(?:password|passwd|passcode|passphrase|pwd|pin code|client[_ -]secret"
    r"|(?:secret|api|access|private)(?:[_ -]access)?[_ -]?key|(?:access|auth|api|bearer)[_ -]token)(?![A-Za-z])"
    r"[\"']?\s*(?:is|was|:|=|->)\s*[`'\"]?([^\s`'\",;]{4,64})",
    re.I,
)
DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
PLACEHOLDER = re.compile(r"^(?:[x*#.•_-]+|<.*>|\{.*\}|\[.*\]|\$.*|%.*|your\w*|none|null|redacted|hidden)$", re.I)


@dataclass(frozen=True)
class Match:
    kind: str  # the specific kind named in evidence (email, phone, aws_access_key, ...)
    start: int
    end: int


def _kinds(value: object) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or any(v not in KINDS for v in values):
        raise TracebankError(f"pii kinds: a non-empty list from {', '.join(KINDS)}, got {value!r}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class PIIOptions:
    kinds: tuple[str, ...] = KINDS  # which kinds to look for (email, phone, card, iban, ssn, secret, password)
    allow_prompt: bool = True  # a value the prompt already holds is not held against the trace

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", _kinds(self.kinds))
        if not isinstance(self.allow_prompt, bool):
            raise TracebankError(f"pii allow_prompt: true or false, got {self.allow_prompt!r}")


class PII:
    name = "pii"
    version = "1"
    reads = ("trace_id", "rationale", "messages")
    Options = PIIOptions

    def __init__(self, options: PIIOptions | None = None):
        self.options = options or PIIOptions()
        self._finders = [finder for kind, finder in FINDERS.items() if kind in self.options.kinds]

    def score(self, table: pa.Table) -> pa.Table:
        columns = table.select(list(self.reads)).to_pydict()
        flagged, evidence, spans, kinds, counts = [], [], [], [], []
        for rationale, messages in zip(columns["rationale"], columns["messages"], strict=True):
            if rationale is None:
                flagged.append(None)
                evidence.append(None)
                spans.append(None)
                kinds.append(None)
                counts.append(None)
                continue
            found = self.matches(rationale, prompt_text(messages) if self.options.allow_prompt else "")
            flagged.append(int(bool(found)))
            evidence.append("; ".join(f"{m.kind} at {m.start}-{m.end}" for m in found[:5]) or None)
            spans.append((found[0].start, found[0].end) if found else None)
            kinds.append(",".join(dict.fromkeys(m.kind for m in found)) or None)
            counts.append(len(found))
        metrics = {"kinds": pa.array(kinds, pa.string()), "matches": pa.array(counts, pa.int64())}
        return safety_result(columns["trace_id"], self.name, flagged, evidence, spans, metrics)

    def matches(self, text: str, prompt: str = "") -> list[Match]:
        """Every match in ``text``, in order, overlaps dropped (the first kind checked keeps its span);
        values ``prompt`` holds are left out."""
        masked = CALCULATOR.sub(lambda m: " " * len(m.group()), text)
        found: list[Match] = []
        for finder in self._finders:
            for match in finder(masked):
                if any(m.start < match.end and match.start < m.end for m in found):
                    continue
                if prompt and _in_prompt(text[match.start : match.end], prompt):
                    continue
                found.append(match)
        return sorted(found, key=lambda m: m.start)


def _in_prompt(value: str, prompt: str) -> bool:
    if value in prompt:
        return True
    digits = re.sub(r"\D", "", value)
    return len(digits) >= 7 and digits in _digits(prompt)


@cache
def _digits(prompt: str) -> str:
    return re.sub(r"[\s().-]", "", prompt)


def _emails(text: str) -> Iterator[Match]:
    for match in TLD_EMAIL.finditer(text):
        if _public_suffix(match.group(1).lower()):
            yield Match("email", *match.span())
    for match in SPELLED_EMAIL.finditer(text):
        if SPELLED_MARK.search(match.group()) and _public_suffix(re.split(r"\W+", match.group())[-1].lower()):
            yield Match("email", *match.span())


@cache
def _public_suffix(tld: str) -> bool:
    return bool(_tld_extract()(f"example.{tld}").suffix)


@cache
def _tld_extract():
    import tldextract

    # Bundled suffix list only: no URL to fetch from, no cache directory to write.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _phones(text: str) -> Iterator[Match]:
    for pattern in PHONES:
        for match in pattern.finditer(text):
            number = match.group()
            if 7 <= _digit_count(number) <= 15 and (number[0] != "+" or _international(number)):
                yield Match("phone", *match.span())
    for match in PHONE_CUE.finditer(text):
        number = match.group(2)
        groups = re.findall(r"\d+", number)
        split = len(groups) > 1 or not number[0].isdigit() or len(number) in (10, 11)  # a US or UK length
        if 7 <= _digit_count(number) <= 15 and max(map(len, groups)) >= 3 and (split or match.group("strong")):
            yield Match("phone", *match.span(2))


def _international(number: str) -> bool:
    """8 to 15 digits with a group of three or more (not ``+2 4 6 8 10``), or in pairs (``+33 1 23 45 67 89``)."""
    long_group = max(map(len, re.findall(r"\d+", number))) >= 3
    return _digit_count(number) >= 8 and (long_group or bool(PAIRS.fullmatch(number)))


def _digit_count(value: str) -> int:
    return sum(char.isdigit() for char in value)


def _cards(text: str) -> Iterator[Match]:
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        groups = re.split(r"[ -]", match.group())
        if len(groups) > 1 and min(map(len, groups)) < 3:
            continue  # "2 4 6 8 10 12 14": a list of numbers, not a card's groups
        if FOUR_FOURS.fullmatch(match.group()) or (
            len(set(digits)) > 1
            and _luhn(digits)
            and (len(groups) > 1 or digits[0] in "23456")  # networks' first digits
        ):
            yield Match("card", *match.span())


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _ibans(text: str) -> Iterator[Match]:
    for match in IBAN.finditer(text):
        compact = match.group().replace(" ", "")
        rearranged = compact[4:] + compact[:4]
        if 15 <= len(compact) <= 34 and int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1:
            yield Match("iban", *match.span())


def _id_documents(text: str) -> Iterator[Match]:
    for match in ID_DOCUMENT.finditer(text):
        yield Match("id_document", match.start(1), match.end(1))


def _ssns(text: str) -> Iterator[Match]:
    for match in [*SSN.finditer(text), *SSN_CUE.finditer(text)]:
        area, group, serial = match.groups()
        if area != "000" and group != "00" and serial != "0000":
            yield Match("ssn", match.start(1), match.end(3))


def _secrets(text: str) -> Iterator[Match]:
    for kind, plugin in SECRET_PLUGINS.items():
        for pattern in plugin.denylist:
            for match in pattern.finditer(text):
                group = 1 if kind in VALUE_GROUP and pattern.groups else 0
                if kind != "jwt" or jwt.JwtTokenDetector.is_formally_valid(match.group()):
                    yield Match(kind, *match.span(group))
    for kind, pattern in EXTRA_SECRETS.items():
        for match in pattern.finditer(text):
            value = match.group(match.re.groups and 1)
            if re.search(r"\d", value) and re.search(r"[A-Za-z]", value):
                yield Match(kind, *match.span(match.re.groups and 1))


def _passwords(text: str) -> Iterator[Match]:
    detector = KeywordDetector()
    position = 0
    for line in text.splitlines(keepends=True):
        if KEYWORD_CUE.search(line):
            yield from _line_passwords(detector, line, position)
        position += len(line)


def _line_passwords(detector: KeywordDetector, line: str, position: int) -> Iterator[Match]:
    for secret in detector.analyze_line(filename="trace.py", line=line, line_number=1):
        value = secret.secret_value or ""
        cue = KEYWORD_CUE.search(line)
        start = line.find(value, cue.start() if cue else 0)
        if start >= 0 and _password_like(value, prose=False):
            yield Match("password", position + start, position + start + len(value))
    for match in PROSE_PASSWORD.finditer(line):
        value = match.group(1).rstrip(".!?:)")
        if _password_like(value, prose=True):
            yield Match("password", position + match.start(1), position + match.start(1) + len(value))


def _password_like(value: str, prose: bool) -> bool:
    """Whether a credential's value looks like one (read here, never kept)."""
    if len(value) < 4 or re.search(r"[\s(\[]", value) or PLACEHOLDER.match(value) or DOTTED_NAME.fullmatch(value):
        return False  # a call, an index, `settings.SECRET`: code that reads the value from elsewhere
    return not prose or bool(re.search(r"[\d\W_]", value))


# Each kind's finder, in the order overlaps are settled: a card's digits are no phone number.
FINDERS: dict[str, Callable[[str], Iterator[Match]]] = {
    "secret": _secrets,
    "email": _emails,
    "iban": _ibans,
    "card": _cards,
    "ssn": _ssns,
    "id_document": _id_documents,
    "phone": _phones,
    "password": _passwords,
}


@cache
def _default() -> PII:
    return PII()


def redact(text: str) -> str:
    """``text`` with every personal detail or secret replaced by its kind (``[email]``): for evidence
    that quotes a sentence, since a reason must never carry the value itself."""
    for match in reversed(_default().matches(text)):
        text = f"{text[: match.start]}[{match.kind}]{text[match.end :]}"
    return text
