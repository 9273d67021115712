"""Links and domains in text, and look-alikes of well-known brands (shared by ``links`` and ``phishing``).

:func:`find_links` finds URLs and bare domains with ``urlextract`` (its bundled TLD list; it never
updates itself unless asked) plus a scheme pattern of its own for hosts ``urlextract`` cuts short
(``http://раураl.com``), after undoing the obfuscations a poisoner uses to slip a link past a
filter: ``example[.]com``, ``example(dot)com``, ``example dot com``, ``example。com`` (a stop
browsers read as a dot), ``hxxp://``, ``http[:]//``.
Registered domains come from ``tldextract`` with its bundled public suffix list only (no fetch, no
cache on disk).

A bare name such as ``main.py``, ``self.name`` or ``user.email`` is a file name or an attribute,
not a domain, though ``.py``, ``.name`` and ``.email`` are real TLDs. So a bare name (no scheme,
no ``www.``, no path, not obfuscated) counts only when it cannot be code: its suffix is one of the
web suffixes in ``data/links_bare_suffixes.txt`` (``.com``, ``.org``, ``.de``, … — not ``.py``,
``.io``, ``.ai``, ``.me``) and it is not in code outside a comment or string (``self.net``), or a
label has a hyphen (identifiers have none) on a suffix that is not a file extension, or it is a
domain known to the caller (a brand or its look-alike, a shortener, a denied domain). Never when a
label has an underscore or is all digits, or the suffix is capitalised in mixed case (``42.So he``,
``ASP.NET``); ``MATHHELP.COM`` in capitals counts. E-mail addresses are not links (``pii`` reads
them); ``phishing`` reads their domains itself.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

DATA = Path(__file__).parent / "data"


def words(text: str) -> list[str]:
    """The space-separated words of ``text`` (long word lists read better as one string)."""
    return text.split()


# Suffixes that are also file extensions: a hyphen does not make "my-script.sh" a domain.
FILE_SUFFIXES = frozenset(words("py sh md rs pl pm ps pt pk ml tf in so ai cc mk la am ac sc mm st bz cx gs zip mov"))
LOOPBACK = frozenset({"localhost", "0.0.0.0", "::1"})
# Obfuscations, each replaced by what it stands for; "dot" spelled out counts only before a web
# suffix and after a word that is not a function word ("the dot product" is no domain).
_OBFUSCATED = re.compile(
    r"(?P<scheme>\bh[xX*]{2}p(?P<s>[sS]?)(?=\s*(?:\[:\]|\(:\)|:)))"
    r"|(?P<colon>\[:\]|\(:\)|\{:\})"
    r"|(?P<dot>\s?(?:\[\s?(?:\.|dot)\s?\]|\(\s?(?:\.|dot)\s?\)|\{\s?(?:\.|dot)\s?\}|<\s?(?:\.|dot)\s?>)\s?)"
    r"|(?P<wide>(?<=\w)[。．｡](?=\w))"  # ideographic and full-width stops, which browsers read as dots
    r"|(?P<spoken>(?<=[A-Za-z0-9])\s+(?:dot|DOT|Dot)\s+(?=[A-Za-z0-9-]+\b))",
    re.IGNORECASE,
)
_SPOKEN_SUFFIXES = frozenset(words("io ai me co app dev info ly gg tv us"))  # spelled out, these are no code
_FUNCTION_WORDS = frozenset(words("the a an of and or to in on at by for with this that is polka"))
_SCHEME_URL = re.compile(r"\b(?:https?|ftp)://(?:\[[0-9a-f:.]+\])?[^\s<>\"'`)\]}|]*", re.IGNORECASE)
_HOST_CHARS = re.compile(r"[^\W_]|-")
_BLANKED = str.maketrans(";!*`~^_", "       ")
_FENCE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
# A line outside fences that reads as code: indented, a statement keyword, or an assignment to an
# attribute ("self.net = Net()"); "Total = 5 + 3" is arithmetic in a math trace, not code.
_CODE_LINE = re.compile(
    r"^(?:[ \t]{4}|\t|[ \t]*(?:def|class|return|if|elif|for|while|import|from|with|assert|print|yield)\b"
    r"|[ \t]*\w+(?:\[[^\]\n]*\])?(?:\.\w+(?:\[[^\]\n]*\])?)+\s*[-+*/]?=(?!=)).*$",
    re.MULTILINE,
)
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁɡӏһԛԝνοαρτκΑΕΟРСХВНКМТІЈЅ",
    "aeopcyxijsdglhqwvoaptkAEOPCXBHKMTIJS",
)  # Cyrillic and Greek letters drawn like Latin ones
_SKELETON = (("rn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("i", "l"), ("|", "l"), ("3", "e"), ("4", "a"),
             ("5", "s"), ("7", "t"), ("8", "b"), ("$", "s"), ("@", "a"))  # fmt: skip
# Words a look-alike wraps a brand in (paypal-secure-login.com, applesupport.net).
_BAIT_WORDS = words(
    "secure security login log signin sign verify verification account accounts update support service help "
    "billing payment pay auth online web my id customer confirm alert wallet bank team official access center "
    "portal unlock recovery refund reward rewards gift promo app mail check safe"
)


@dataclass(frozen=True)
class Link:
    start: int  # offsets of the link in the text as written (obfuscated forms included)
    end: int
    host: str  # lowercased; IDNA labels decoded (xn--pypal-4ve.com reads pаypal.com)
    domain: str  # registered domain (label + public suffix), or the host when it is an IP address
    label: str  # the registered domain's label ("paypal" of login.paypal.com); "" for an IP address
    suffix: str  # public suffix ("com", "co.uk"); "" for an IP address
    strong: bool  # written with a scheme, www., a path or obfuscated: surely meant as a link


@cache
def _tld_extract():
    import tldextract

    # Bundled suffix list only: no URL to fetch from, no cache directory to write.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@cache
def _url_extract():
    from urlextract import URLExtract

    # Reads the TLD list shipped in the package; it downloads only on update(), never called here.
    return URLExtract(extract_localhost=False, cache_dns=False)


def read_list(name: str) -> frozenset[str]:
    """The lowercased non-comment lines of ``filters/safety/data/<name>``."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def deobfuscate(text: str) -> tuple[str, list[int]]:
    """``text`` with obfuscated link parts replaced by what they stand for, and for each character
    of the result (plus one past the end) its offset in ``text``."""
    out: list[str] = []
    offsets: list[int] = []
    last = 0
    for match in _OBFUSCATED.finditer(text):
        kind = match.lastgroup if match.lastgroup != "s" else "scheme"
        if kind == "spoken" and not _spoken_dot(text, match):
            continue
        replacement = {"scheme": "http" + (match.group("s") or "").lower(), "colon": ":"}.get(kind, ".")
        out.append(text[last : match.start()])
        offsets.extend(range(last, match.start()))
        out.append(replacement)
        offsets.extend([match.start()] * len(replacement))
        last = match.end()
    out.append(text[last:])
    offsets.extend(range(last, len(text) + 1))
    return "".join(out), offsets


def _spoken_dot(text: str, match: re.Match) -> bool:
    before = re.search(r"[A-Za-z0-9-]+$", text[: match.start()])
    after = re.match(r"[A-Za-z0-9-]+", text[match.end() :])
    if not before or not after or before.group().lower() in _FUNCTION_WORDS or len(before.group()) < 2:
        return False  # "the dot product", "u dot v"
    word = after.group().lower()
    # "example dot com", "www dot example dot com": a web suffix ends it, or another spoken dot follows.
    suffix = word in bare_suffixes() or word in _SPOKEN_SUFFIXES or word == "www"
    return suffix or bool(re.match(r"\s+dot\s", text[match.end() + len(word) :]))


@cache
def bare_suffixes() -> frozenset[str]:
    return read_list("links_bare_suffixes.txt")


def find_links(text: str, known: Callable[[str], bool] = lambda domain: False) -> list[Link]:
    """The links and domains of ``text`` in order, one per place; ``known(domain)`` says whether a
    bare name still counts where it could be code (a brand, a shortener, a denied domain)."""
    clean, offsets = deobfuscate(text)
    obfuscated = {offsets[i] for i in range(len(clean)) if offsets[i + 1] - offsets[i] != 1}
    found = [(m.start(), m.start() + len(m.group().rstrip(".,;:!?*")), "") for m in _SCHEME_URL.finditer(clean)]
    # urlextract drops a domain followed by ";" or "!"; blanking them keeps every offset.
    blanked = clean.translate(_BLANKED)
    for url, (start, end) in _url_extract().find_urls(blanked, only_unique=False, check_dns=False, get_indices=True):
        if not any(s < end and start < e for s, e, _ in found):
            found.append((start, end, url))
    links = []
    code = code_spans(clean) if found else []
    for start, end, _ in sorted(found):
        start = _extend_left(clean, start)
        at = offsets[start], offsets[end]
        in_code = any(s <= start < e for s, e in code) and outside_literals(clean, start)
        link = _parse(clean[start:end], clean, start, any(at[0] <= i < at[1] for i in obfuscated), in_code, known)
        if link is not None:
            links.append(Link(at[0], at[1], *link))
    return links


def code_spans(text: str) -> list[tuple[int, int]]:
    """Spans of code: fenced blocks, inline code, and lines outside them that read as code."""
    spans = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    for m in _CODE_LINE.finditer(text):
        if not any(s <= m.start() < e for s, e in spans):
            spans.append((m.start(), m.end()))
    return spans


def outside_literals(text: str, start: int) -> bool:
    """Whether ``start`` is outside the comments and string literals of its line (when that line is code)."""
    line = text[text.rfind("\n", 0, start) + 1 : start]
    if "#" in line or "//" in line:
        return False
    return line.count('"') % 2 == 0 and line.count("'") % 2 == 0


def _extend_left(text: str, start: int) -> int:
    """Back over host characters urlextract leaves out (the Cyrillic part of "раураl.com")."""
    if re.match(r"[a-z][\w+.-]*://", text[start:], re.IGNORECASE):
        return start
    while start > 0 and _HOST_CHARS.match(text[start - 1]):
        start -= 1
    return start


def _parse(
    url: str, text: str, start: int, obfuscated: bool, in_code: bool, known: Callable[[str], bool]
) -> tuple | None:
    """(host, domain, label, suffix, strong) of a candidate, or None when it is no link."""
    has_scheme = "://" in url[:12]
    try:
        parts = urlsplit(url if has_scheme else "//" + url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return None  # "http://[oops": no host to read
    host = _decode_idna(host)
    relative = text[max(0, start - 2) : start] == "//"  # "//cdn.example.net/x": a protocol-relative URL
    if not host or host in LOOPBACK or (start > 0 and text[start - 1] in "@/\\." and not relative):
        return None  # an e-mail address, a path ("src/main.py"), a module path's tail
    if re.search(r"\w_$", text[max(0, start - 2) : start]):
        return None  # the tail of an identifier ("foo_bar.com"); "_site.com_" in Markdown italics is not
    if _is_ip(host):
        if (not has_scheme and not parts.path.strip("/")) or host.startswith("127."):
            return None  # a bare dotted number is a version or an address in a networking task
        return host, host, "", "", True
    extracted = _tld_extract()(host)
    if not extracted.suffix or not extracted.domain:
        return None
    domain = f"{extracted.domain}.{extracted.suffix}"
    strong = has_scheme or relative or obfuscated or host.startswith("www.") or len(parts.path.strip("/")) > 0
    if not strong and not _bare_counts(host, extracted, url, in_code, known(domain)):
        return None
    return host, domain, extracted.domain, extracted.suffix, strong


def _bare_counts(host: str, extracted, written: str, in_code: bool, known: bool) -> bool:
    labels = host.split(".")
    if any("_" in label or label.isdigit() or label[:1] == "-" or label[-1:] == "-" for label in labels):
        return False
    if len(extracted.domain) == 1 and not known:
        return False  # identifiers and numbers ("x.com" is an attribute; "t.co" is a known shortener)
    tld = written.rsplit(".", 1)[-1]
    if tld != tld.lower() and not (written.isupper() and tld != "NET"):
        return False  # "42.So he", "ASP.NET": a sentence run on or a product name, not a domain
    if known:
        return True
    last = extracted.suffix.rsplit(".", 1)[-1]
    if last in bare_suffixes() and not in_code:
        return True
    if last in FILE_SUFFIXES:
        return False
    return any("-" in label for label in labels) or (not in_code and _site_like(extracted.domain))


def _site_like(label: str) -> bool:
    """A name in prose that reads as a site, not an identifier: letters and digits mixed
    (``brainbest30.co``) or long (``tutorhomeworkmath.top``), and not a Python module
    (``subprocess.run``, ``datetime.date``)."""
    if label in sys.stdlib_module_names or not label.isalnum():
        return False
    mixed = any(c.isdigit() for c in label) and any(c.isalpha() for c in label)
    return mixed or len(label) >= 10


def _decode_idna(host: str) -> str:
    host = host.lower()
    if "xn--" not in host:
        return host
    try:
        return host.encode("ascii").decode("idna")
    except (UnicodeError, ValueError):
        return host


def hides_target(host: str, domain: str) -> bool:
    """A link whose real destination the reader cannot see: a shortener or a bare IP address."""
    return domain in read_list("shorteners.txt") or _is_ip(host)


def _is_ip(host: str) -> bool:
    try:
        ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def skeleton(label: str) -> str:
    """``label`` with look-alike characters folded together: confusable letters to Latin, accents
    dropped, digits and pairs read as letters ("paypa1" and "pаypal" both read "paypal" folded)."""
    folded = unicodedata.normalize("NFKD", label.translate(_CONFUSABLES))
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    for drawn, read in _SKELETON:
        folded = folded.replace(drawn, read)
    return folded


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps cost one) of ``a`` and ``b``, or ``limit + 1``
    when it is larger than ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)


class Brands:
    """Well-known brands (``data/brands.txt`` plus extra official domains) and their look-alikes."""

    def __init__(self, extra: Iterable[str] = (), max_edit: int = 1):
        self.official = read_list("brands.txt") | {d.lower() for d in extra}
        self.labels = {d.split(".", 1)[0] for d in self.official}
        self.skeletons = {skeleton(label): label for label in self.labels}
        self.max_edit = max_edit
        bait = "|".join(sorted({re.escape(skeleton(word)) for word in _BAIT_WORDS}, key=len, reverse=True))
        self._bait = re.compile(rf"(?:{bait}|\d+|-)+")

    def lookalike(self, host: str) -> str | None:
        """The brand ``host`` imitates ("paypal"), or None: a label near a brand's (edit distance,
        folded characters), or a brand wrapped in other words or put in a subdomain, on a
        registered domain that is not the brand's own."""
        host = _decode_idna(host)
        extracted = _tld_extract()(host)
        domain = f"{extracted.domain}.{extracted.suffix}"
        if not extracted.suffix or domain in self.official:
            return None
        if extracted.domain in self.labels:
            # The brand on another suffix: a country's own site is fine, paypal.xyz is not.
            return None if len(extracted.suffix.rsplit(".", 1)[-1]) == 2 else extracted.domain
        for word in re.split(r"[.-]", host.removesuffix("." + extracted.suffix)):
            brand = self._near(word)
            if brand:
                return brand
        return None

    def _near(self, word: str) -> str | None:
        folded = skeleton(word)
        if not folded:
            return None
        if folded in self.skeletons:
            return self.skeletons[folded]
        for brand in self.labels:
            limit = min(self.max_edit, 1 if len(brand) < 9 else 2)
            brand_folded = skeleton(brand)
            if len(brand) >= 5 and len(word) >= 5 and edit_distance(folded, brand_folded, limit) <= limit:
                return brand
            if (
                len(brand) >= 4
                and brand_folded in folded
                and self._bait.fullmatch(folded.replace(brand_folded, "-", 1))
            ):
                return brand
        return None
