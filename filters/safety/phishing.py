"""Phishing in rationales: asking the reader for secrets or money, under pressure, through a fake site.

Three signals, each a family of word forms rather than fixed strings:

- a **request**: a verb of handing over (enter, type, confirm, verify, provide, send, share, reply
  with, update, submit, disclose, …; any inflection) followed within ``window`` words, in the same
  clause, by a sensitive object (password, PIN, card number, CVV, SSN, bank details, login,
  one-time code, seed phrase, date of birth, …), or a verb of paying (send, buy, wire, transfer,
  pay, …) followed by a scam payment (gift cards, crypto, a wire transfer, a processing or release
  fee); directed at the reader: "your" between verb and object, the verb opening its clause (an
  imperative, after "please", "kindly", "to continue," …), after "you must / need to / can" or
  "can you", but not "You enter your PIN" (a second-person story) nor "Validates a code" (a
  description); or a demand without a verb ("we need your card number", "what is your PIN?",
  "your password is required", "please … your SSN"); or "your card number" or "log in" in a
  sentence that points to a link (a look-alike, for "log in");
- **urgency**: deadlines and threats ("within 24 hours", "act now", "final notice", "your account
  will be suspended", "unusual activity");
- a **look-alike** link or e-mail domain (``filters.safety.domains``, shared with ``links``).

A trace is flagged when it makes a request, or when urgency comes with a link or an address the
prompt does not contain, within ``NEAR`` characters of each other (one message, not a code file
whose docstring says "ASAP" and whose licence header has a URL). Text the prompt already holds is
never held against the trace: a word problem in which Maria enters her PIN may say so (the prompt
names the object and the verb), unless the same sentence points somewhere (a link or an e-mail
address). Code itself and its one-line strings (the prompt of ``input("Enter your password: ")``)
are the program's text, not the teacher's, and pass unless the line points somewhere; comments and
docstrings are read like prose, except that their imperatives about what programs handle
("Send password, return response", "# verify the token") must also name the reader or point
somewhere.

Columns: ``requests`` and ``urgency`` (matches counted), ``lookalike`` (0/1) and the core safety
columns; ``evidence`` is the first request (else the first urgent phrase and the link), clipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.safety.domains import Brands, code_spans, find_links, hides_target, words
from tracebank.filters.safety.links import DEFAULT_ALLOW, MAX_EDIT
from tracebank.filters.safety.safety import prompt_text, safety_result

# Verbs of handing over and of paying; single words match every inflection ("updating", "submitted"),
# but only the bare form is an imperative: "validates a code" or "sent the card" needs "your" to count.
_CREDENTIAL_VERBS = [
    *words(
        "enter re-enter reenter type input provide confirm verify validate update submit send share give disclose tell "
        "supply upload email e-mail text dm message forward reveal post paste drop leave put activate reactivate "
        "re-activate unlock include attach authenticate register login signin snap take scan photograph have transmit "
        "furnish relay divulge pass deliver fax show present spell"
    ),
    r"key\s+in",
    r"fill\s+(?:in|out)",
    r"(?:reply|respond|get\s+back|write\s+back)\s+(?:to\s+(?:\w+\s+){1,3})?with",
    r"hand\s+over",
    r"log\s+in",
    r"sign\s+in",
    r"read\s+out",
    r"call\s+\w+\s+with",
    r"let\s+(?:us|me)\s+know",
    r"write\s+down",
    r"check\s+in\s+with",
]
_PAY_VERBS = [
    *words("send buy purchase pay wire transfer deposit remit load cover settle mail"),
    r"top\s+up",
    r"pick\s+up",
]


def _inflected(verbs: list[str]) -> str:
    forms = []
    for verb in verbs:
        if not verb.isalpha() and "-" not in verb:
            forms.append(verb)  # a phrase: matched as written
        elif verb.endswith("e"):
            forms.append(verb[:-1] + "(?:e|es|ed|ing)")
        else:
            forms.append(verb + f"{verb[-1]}?(?:s|es|ed|d|ing)?")
    return "|".join(sorted(forms, key=len, reverse=True))


_SECRETS = (
    r"pass(?:word|code|phrase|key)s?|passwd|pwd|pw|(?-i:PIN)s?|pin(?=\s+(?:number|code))|"
    r"(?:secret|api|access|auth|private)\s+(?:key|token)s?|"
    r"(?:credit|debit|bank|atm|payment|visa|mastercard|amex)\s+card(?:\s+(?:number|details|info|information|data))?s?|"
    r"card\s+(?:number|details|info|information|data|credentials|verification\s+(?:code|value))s?|"
    r"cvv2?|cvc2?|security\s+code|expir(?:y|ation)\s+date|ssn|social\s+security(?:\s+number)?|"
    r"social\s+insurance\s+number|national\s+(?:id|insurance)(?:\s+number)?|tax\s+(?:id|file\s+number)|"
    r"(?:bank(?:ing)?|checking|savings)\s+(?:account|details|info|information|login|credentials|password)s?"
    r"(?:\s+(?:number|details|info|information))?|"
    r"account\s+(?:number|credentials|details|info|information|login|password|pin)s?|"
    r"routing\s+(?:(?:and|&)\s+account\s+)?numbers?|iban|swift\s+code|sort\s+code|"
    r"log-?in\s+(?:details|credentials|info|information|data)|sign-?in\s+(?:details|credentials)|credentials|"
    r"user\s?names?\s+and\s+passwords?|one[-\s]time\s+(?:code|password|passcode|pin)|otp|"
    r"(?:verification|security|authentication|auth|2fa|mfa|two[-\s]factor|sms|login)\s+codes?|"
    r"seed\s+phrase|recovery\s+(?:phrase|words|key|code)|mnemonic\s+phrase|private\s+keys?|"
    r"wallet\s+(?:key|phrase|password|seed)|mother'?s\s+maiden\s+name|date\s+of\s+birth|"
    r"passport(?:\s+(?:number|details|scan))?|driver'?s\s+licen[cs]e(?:\s+number)?|"
    r"(?:billing|payment|personal|banking|financial)\s+(?:details|info|information|data|address)|"
    r"home\s+address|(?:apple|google|microsoft|paypal|amazon|icloud)\s+(?:id|account|password|login|profile)|"
    r"(?:account|login|address|phone\s+number|identity|(?:full|legal|real)\s+name|pins?)|"
    r"card(?:'s)?\s+(?:no\b\.?|security\s+(?:code|number)|cvv|details|info)|security\s+number|"
    r"(?:\d+|three|four|five|six|eight)[-\s]digit\s+(?:code|pin|security\s+code|number\s+on\s+(?:your|the)\s+card)|"
    r"(?:numbers?|codes?|digits)\s+(?:on|from|printed\s+on)\s+(?:the\s+(?:front|back)\s+of\s+)?your\s+card|"
    r"(?:photo|picture|scan|image|copy|photocopy)\s+of\s+your\s+(?:\w+\s+)?(?:card|id|passport|licen[cs]e)"
)
_PAYMENTS = (
    r"(?:(?:itunes|google\s+play|steam|amazon|apple|ebay|prepaid|visa)\s+)?gift\s*cards?|"
    r"(?:itunes|google\s+play|steam|prepaid)\s+cards?|bitcoins?|btc|crypto(?:currency)?|usdt|ethereum|"
    r"wire\s+transfer|western\s+union|moneygram|"
    r"(?:processing|handling|release|unlock(?:ing)?|activation|clearance|customs|verification|administrative|"
    r"admin|registration|small|one-time|upfront|advance|service|transfer)\s+(?:fee|charge|payment)s?|"
    r"(?<=the\s)fee"
)
# Money sent somewhere the text names: "wire $200 to the account below", "send it to our wallet".
_DESTINATIONS = (
    r"(?:account|wallet|address|agent|recipient)\s+(?:below|above|provided|listed|given|here)|"
    r"(?:our|my|this)\s+(?:[\w-]+\s+)?(?:account|wallet|agent)|(?:btc|bitcoin|crypto|wallet|usdt)\s+address"
)
# What a program checks about a secret, not the secret itself ("verify the password length").
_NOT_SECRET = (
    r"(?:length|strength|polic(?:y|ies)|rules?|format|validat\w*|checker|field|hash\w*|requirements?|complexity|"
    r"digits?|characters?|chars?|generator|manager|reset\s+(?:link|email)|column|variable|parameter|argument|"
    r"balance|totals?|types?|history|statements?|activity|holders?|fees?|limits?|numbers?\s+of)\b"
)
# A verb after the object makes it the subject of a check, not a thing handed over.
_PREDICATE = re.compile(
    r"\s+(?:is|are|was|were|has|have|passes|pass|matches|match|contains|contain|meets|meet|satisfies|equals|exists)\b"
)
_LEAD = (
    r"(?:please|kindly|just|simply|now|then|and|also|first|next|immediately|quickly|urgently|go\s+ahead\s+and|"
    r"(?:be|make)\s+sure\s+(?:to|you)|remember\s+to|do\s+not\s+forget\s+to|don'?t\s+forget\s+to|"
    r"(?:note|important|reminder|action\s+required|ps|p\.s\.|nb|tip|update|notice|warning)\s*[:.-]?|"
    r"(?:you|users?|customers?|readers?|members?|students?|visitors?|learners?|subscribers?|participants?|viewers?|"
    r"people|those|everyone|anyone|whoever|all\s+(?:users|students))"
    r"(?:\s+\w+){0,6}?(?:\s+|(?='))(?:must|should|need\s+to|needs\s+to|"
    r"have\s+to|has\s+to|are\s+required\s+to|are\s+asked\s+to|will\s+need\s+to|'ll\s+(?:need|have)\s+to|can|may|could|"
    r"are\s+to|ought\s+to)(?:\s+(?:first|also|now|then|please|immediately|just))?|pls|plz|to\s+\w+(?:\s+\w+){0,4},|if\s+[^,]{1,60},|by|after|before|via|\W)\s*"
)
_DEMAND = re.compile(
    rf"\b(?:we|i)(?:'ll|\s+will|'d|\s+would|\s+just|\s+still)?\s+(?:need|require|request|must\s+have|have\s+to\s+(?:verify|confirm))\s+"
    rf"(?:to\s+(?:verify|confirm|see|have)\s+)?your\s+(?:{_SECRETS})\b(?!\s+{_NOT_SECRET})"
    rf"|\byour\s+(?:{_SECRETS})\s+(?:is|are|must\s+be|has\s+to\s+be|needs\s+to\s+be|will\s+be)\s+"
    rf"(?:required|needed|requested|re-?verified|verified|confirmed|updated|expired)"
    rf"|\bwhat(?:'s|\s+is|\s+are)\s+(?:your|ur)\s+(?:\w+\s+){{0,2}}?(?:{_SECRETS})\b(?!\s+{_NOT_SECRET})"
    rf"|\b(?:please|kindly|pls|plz)\b[^.!?\n]{{0,60}}?\b(?:your|ur)\s+(?:[\w-]+\s+){{0,3}}?(?:{_SECRETS})\b(?!\s+{_NOT_SECRET})"
    rf"|\b(?:{_PAYMENTS})\s+(?:must|should|needs\s+to|has\s+to|is\s+to|will\s+need\s+to)\s+be\s+"
    rf"(?:paid|sent|wired|transferred|deposited|covered|settled)",
    re.IGNORECASE,
)
_URGENCY = re.compile(
    r"\bwithin\s+(?:the\s+next\s+)?(?:\d+|one|two|three|twelve|twenty[-\s]four|forty[-\s]eight|a\s+few)\s*"
    r"(?:hours?|hrs?|h|days?|minutes?|mins?)\b|"
    r"\b(?:act|respond|reply|verify|confirm|pay|call|click|update|log\s*in)\s+(?:now|immediately|today|right\s+away|"
    r"at\s+once|asap|promptly|urgently|fast|quickly)\b|\burgent(?:ly)?\b|\basap\b|\bwithout\s+delay\b|"
    r"\b(?:final|last)\s+(?:notice|warning|reminder|chance)\b|"
    r"\b(?:account|access|card|service|subscription|membership|profile|password|wallet)\s+(?:will|may|could|is\s+going\s+to)"
    r"\s+(?:be\s+)?(?:permanently\s+)?(?:suspended|locked|closed|terminated|deactivated|disabled|blocked|frozen|deleted|"
    r"restricted|cancel+ed|revoked|compromised)\b|"
    r"\b(?:suspended|locked|deactivated|blocked|frozen|restricted|compromised)\s+(?:account|access|card)\b|"
    r"\b(?:has|have)\s+been\s+(?:compromised|suspended|locked|flagged)\b|"
    r"\b(?:expires?|expiring)\s+(?:today|tonight|soon|in\s+\d+)\b|\blimited[-\s]time\b|\btime[-\s]sensitive\b|"
    r"\bdon'?t\s+(?:delay|wait|miss\s+out)\b|\bbefore\s+it'?s\s+too\s+late\b|\bfailure\s+to\s+(?:comply|respond|verify|confirm|pay|update|act|reply)\b|"
    r"\blegal\s+action\b|\b(?:unusual|suspicious|unauthori[sz]ed)\s+(?:activity|sign-?in|log-?in|access|transaction)s?\b|"
    r"\bsecurity\s+(?:alert|breach)\b|\bimmediate(?:ly)?\s+action\b|\bhurry\b|\b(?:today|tonight)\s+only\b|"
    r"\b(?:offer|deal|sale|access)\s+ends\b|\bwhile\s+supplies\s+last\b|\bact\s+fast\b|\bonly\s+\d+\s+(?:left|remaining)\b",
    re.IGNORECASE,
)
# Words that are secrets only as the reader's own ("your login", "your Venmo account"), not "the account".
_GENERIC = re.compile(r"(?:account|login|address|phone\s+number|identity|(?:full|legal|real)\s+name|(?-i:pins?))", re.I)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@((?:[\w-]+\.)+[A-Za-z]{2,})\b")
WINDOW = 8
NEAR = 500  # characters between an urgent phrase and a link that belong to one message
_LOGIN = re.compile(r"\b(?:log\s*in|sign\s*in|verify|confirm|update|re-?activate|unlock|restore|validate)\b", re.I)
# "you" opening a clause right before the verb narrates ("You enter your PIN", "so you pay");
# "can you", "until you", "unless you" would ask.
_NARRATED = re.compile(r"(?:^|[.!?:;,\n]\s*|\b(?:then|and|so|now|first|next)\s+)you\s+$", re.I)
_CODE_SECRET = re.compile(
    r"pass|pwd|\bpw\b|key|token|credential|log-?in|user\s?name|pin|account|address|code|otp|name", re.I
)
_READER = re.compile(
    r"\b(?:you|your|ur|yours|us|our|me|please|kindly|pls|plz|users?|customers?|readers?|everyone|anyone)\b", re.I
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")  # a dot inside a link or an address ends nothing
_BASE_FORMS = frozenset(v for v in _CREDENTIAL_VERBS + _PAY_VERBS if v.replace("-", "").isalpha())
_PHRASES = [v for v in _CREDENTIAL_VERBS + _PAY_VERBS if v not in _BASE_FORMS]


def _request_pattern(verbs: list[str], objects: str, window: int) -> re.Pattern:
    # verb, then up to ``window`` words with no clause break, then the object
    return re.compile(
        rf"\b(?P<verb>{_inflected(verbs)})\b(?P<between>(?:[^\S\n]+(?:[$€£¥]?\d[\d.,]*\d|[^\s.!?;:,]+)){{0,{window}}}?)[^\S\n]+"
        rf"(?P<object>{objects})\b(?!-|\s+{_NOT_SECRET})",
        re.IGNORECASE,
    )


@dataclass(frozen=True)
class PhishingOptions:
    window: int = WINDOW  # words allowed between a request verb and what it asks for
    brands: tuple[str, ...] = ()  # official domains of more brands, added to data/brands.txt, for look-alikes
    max_edit: int = 1  # edits that make a domain label a look-alike of a brand's (as in ``links``)

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or not 1 <= self.window <= 20:
            raise TracebankError(f"phishing window: a whole number of words from 1 to 20, got {self.window!r}")
        brands = (self.brands,) if isinstance(self.brands, str) else self.brands
        if not isinstance(brands, (list, tuple)) or not all(isinstance(b, str) and "." in b for b in brands):
            raise TracebankError(f"phishing brands: a list of domains such as ['example.com'], got {self.brands!r}")
        object.__setattr__(self, "brands", tuple(b.strip().lower() for b in brands))
        edit = self.max_edit
        if isinstance(edit, bool) or not isinstance(edit, int) or not 0 <= edit <= MAX_EDIT:
            raise TracebankError(f"phishing max_edit: a whole number from 0 to {MAX_EDIT}, got {edit!r}")


class Phishing:
    name = "phishing"
    version = "1"
    reads = ("trace_id", "messages", "rationale")
    Options = PhishingOptions

    def __init__(self, options: PhishingOptions | None = None):
        self.options = options or PhishingOptions()
        self.brands = Brands(self.options.brands, self.options.max_edit)
        self.credentials = _request_pattern(_CREDENTIAL_VERBS, _SECRETS, self.options.window)
        self.payments = _request_pattern(_PAY_VERBS, f"{_PAYMENTS}|{_DESTINATIONS}", self.options.window)
        self.yours = re.compile(rf"\b(?:your|ur)\s+(?:[\w-]+\s+){{0,2}}?(?:{_SECRETS})\b(?!\s+{_NOT_SECRET})", re.I)

    def score(self, table: pa.Table) -> pa.Table:
        rows = table.select(list(self.reads)).to_pylist()
        results = [self.judge(row["rationale"], prompt_text(row["messages"])) for row in rows]
        flagged = [r[0] for r in results]
        metrics = {
            "requests": pa.array([r[3] for r in results], pa.int64()),
            "urgency": pa.array([r[4] for r in results], pa.int64()),
            "lookalike": pa.array([r[5] for r in results], pa.int8()),
        }
        trace_ids = [row["trace_id"] for row in rows]
        return safety_result(trace_ids, self.name, flagged, [r[1] for r in results], [r[2] for r in results], metrics)

    def judge(self, rationale: str | None, prompt: str) -> tuple:
        """(flagged, evidence, span, requests, urgency, lookalike) of one rationale; all None without one."""
        if rationale is None:
            return None, None, None, None, None, None
        prompt_lower = prompt.lower()
        pointers = self.pointers(rationale, prompt)
        lookalike = int(any(is_lookalike for _, _, is_lookalike, _ in pointers))
        requests = self.requests(rationale, prompt_lower, pointers)
        urgent = [m for m in _URGENCY.finditer(rationale) if m.group().lower() not in prompt_lower]
        if requests:
            start, end = requests[0]
            return 1, rationale[start:end], requests[0], len(requests), len(urgent), lookalike
        near = [(m, host) for m in urgent for at, host, *_ in pointers if abs(at - m.start()) <= NEAR]
        if near:
            match, host = near[0]
            return 1, f"{match.group()} … {host}", match.span(), 0, len(urgent), lookalike
        return 0, None, None, 0, len(urgent), lookalike

    def pointers(self, rationale: str, prompt: str) -> list[tuple[int, str, bool, bool]]:
        """(offset, host, look-alike?, hides its target?) of each link and e-mail address the prompt does not contain."""
        found = [(link.start, link.host, link.domain) for link in find_links(rationale, self.brands.lookalike)]
        found += [(m.start(), m.group(1).lower(), m.group(1).lower()) for m in _EMAIL.finditer(rationale)]
        if not found:
            return []
        known = {link.domain for link in find_links(prompt, lambda domain: True)}
        known |= {m.group(1).lower() for m in _EMAIL.finditer(prompt)}
        return [
            (start, host, bool(self.brands.lookalike(host)), hides_target(host, domain))
            for start, host, domain in sorted(found)
            if domain not in known and not any(domain == a or domain.endswith("." + a) for a in DEFAULT_ALLOW)
        ]

    def requests(self, text: str, prompt_lower: str, pointers: list) -> list[tuple[int, int]]:
        """Spans of the requests for secrets or payment in ``text`` directed at the reader, in order."""
        spans = []
        code = code_spans(text)
        for pattern in (self.credentials, self.payments):
            for match in pattern.finditer(text):
                # Comments and docstrings speak in the imperative ("Send password, return response"):
                # there a bare imperative about what programs handle (passwords, tokens, logins) must
                # also name the reader or point somewhere; card numbers and SSNs are no code's business.
                strict = (
                    pattern is self.credentials
                    and _CODE_SECRET.search(match.group("object"))
                    and any(s <= match.start() < e for s, e in code)
                )
                if not _directed(text, match):
                    continue
                if strict and not (_names_reader(text, match) or _sentence_points(text, match.start(), pointers)):
                    continue
                verb = match.group("verb")
                if self._counts(text, match.start(), match.group("object"), prompt_lower, pointers, verb):
                    spans.append(match.span())
        for match in _DEMAND.finditer(text):
            if self._counts(text, match.start(), match.group(), prompt_lower, pointers):
                spans.append(match.span())
        # "your card number" in a sentence that points somewhere: the form at that link asks for it;
        # "log in at paypa1.com": a look-alike, or a link that hides where it goes (bit.ly, an IP
        # address), is where the reader would type the secret.
        spans += [m.span() for m in self.yours.finditer(text) if _sentence_points(text, m.start(), pointers)]
        fakes = [p for p in pointers if p[2] or p[3]]
        spans += [m.span() for m in _LOGIN.finditer(text) if _sentence_points(text, m.start(), fakes)]
        return sorted(set(spans))

    def _counts(self, text: str, start: int, what: str, prompt_lower: str, pointers: list, verb: str = "") -> bool:
        """Whether a request at ``start`` counts: not the program's own text, not the prompt's story
        (the prompt names the object and, for a verb-object request, the verb too)."""
        points = _sentence_points(text, start, pointers)
        if _in_program_text(text, start) and not points:
            return False
        said = r"\s+".join(re.escape(word) for word in what.lower().split())
        told = re.search(rf"\b{said}\b", prompt_lower) and re.search(rf"\b{re.escape(verb.lower()[:4])}", prompt_lower)
        return points or not told


def _sentence_points(text: str, start: int, pointers: list) -> bool:
    """Whether the sentence around ``start`` holds a link or address (its dots do not end it)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, start)]
    after = _SENTENCE_END.search(text, start)
    sentence_start, sentence_end = (ends[-1] if ends else 0), (after.start() if after else len(text))
    return any(sentence_start <= at < sentence_end for at, *_ in pointers)


def _names_reader(text: str, match: re.Match) -> bool:
    """Whether the request's sentence speaks to the reader ("you", "us"), or opens with "please"."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, match.start())]
    after = _SENTENCE_END.search(text, match.end())
    sentence = text[ends[-1] if ends else 0 : after.start() if after else len(text)]
    return bool(_READER.search(sentence))


def _directed(text: str, match: re.Match) -> bool:
    """Whether a verb-object match asks the reader: "your" in between, or the verb opens its clause."""
    if _NARRATED.search(text, max(0, match.start() - 40), match.start()):
        return False  # "You enter your PIN: 10^4 codes": a second-person story, not a demand
    if re.search(r"\b(?:your|ur|yours)\b", match.group("between"), re.IGNORECASE):
        return True
    if _GENERIC.fullmatch(match.group("object")):
        return False  # "update the account", "enter the address": only the reader's own is a secret
    if _PREDICATE.match(text, match.end()):
        return False  # "confirm the card number passes the check": a check the code makes
    before = text[max(0, match.start() - 120) : match.start()]
    verb = " ".join(match.group("verb").lower().split())
    if verb.endswith("ing"):
        return bool(re.search(r"\b(?:by|start|try|begin|consider|recommend|suggest)\s+$", before, re.IGNORECASE))
    if verb not in _BASE_FORMS and not any(re.fullmatch(v, verb) for v in _PHRASES):
        return False  # "Validates a code", "sent the gift card": a description, not a demand
    clause = re.split(r"[.!?;:,\n(—–•*#>\"]\s*|\s-\s", before)[-1]
    # Peel lead-ins ("please", "to continue,", "you must") off the clause; an imperative leaves nothing.
    rest = clause.strip()
    while rest:
        peeled = re.sub(rf"^{_LEAD}", "", rest, flags=re.IGNORECASE).strip()
        if peeled == rest:
            return False
        rest = peeled
    return True


def _in_program_text(text: str, start: int) -> bool:
    """Whether ``start`` is in a program's own text: code syntax or a one-line string literal, not a
    comment or a docstring (where a poisoner writes to the reader)."""
    block = next(((s, e) for s, e in code_spans(text) if s <= start < e), None)
    if block is None:
        return False
    before = text[block[0] : start]
    if (before.count('"""') + before.count("'''")) % 2 == 1:
        return False  # a docstring
    return "#" not in text[text.rfind("\n", 0, start) + 1 : start]
