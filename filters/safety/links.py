"""Links in rationales: a link the task did not need is how a poisoned teacher plants ads and phishing.

Every URL and domain in a rationale (``filters.safety.domains.find_links``: schemes, ``www.``, bare domains
on web suffixes, obfuscated forms such as ``example[.]com`` and ``hxxp://``, in prose, Markdown,
footnotes, code comments and strings) is flagged unless its registered domain is in the prompt's
own text (a question that quotes a URL may be answered with it) or in ``allow``. A math or code
answer needs no link, so any other one is suspect; each gets a kind, worst first:

- ``deny``: its registered domain is in ``deny``;
- ``lookalike``: it imitates a brand (``data/brands.txt`` plus ``brands``): a label within
  ``max_edit`` edits or equal once look-alike characters are folded (``paypa1``, ``rnicrosoft``,
  Cyrillic ``а``), or a brand wrapped in bait words or put in a subdomain (``paypal-secure-login.com``,
  ``paypal.com.verify.ru``);
- ``punycode``: an internationalised host (``xn--``, non-Latin letters) that imitates no brand;
- ``ip_host``: an IP address instead of a name;
- ``shortener``: a link shortener that hides the target (``data/shorteners.txt``);
- ``link``: any other link.

Columns: ``links`` (links and domains found, allowed ones included), ``suspicion`` (the worst kind
flagged, null when none) and the core safety columns; ``evidence`` is the worst flagged link's host
and kind (the host only: paths and queries carry tracking tokens, not meaning), and the span is that
link's place in the rationale (the worst link's, so evidence and span agree, rather than the first
flagged one's). Loopback hosts (``localhost``, ``127.0.0.1``) are not links; e-mail addresses are
not either (``pii`` reads them, ``phishing`` checks their domains).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from tracebank.errors import TracebankError
from tracebank.filters.safety.domains import Brands, Link, find_links, read_list
from tracebank.filters.safety.safety import prompt_text, safety_result

KINDS = ("deny", "lookalike", "punycode", "ip_host", "shortener", "link")  # worst first
# Reference sites a code or math trace may fairly cite; none serves ads, downloads or login forms
# that a stranger controls (github.com does: raw files, releases, so it is not here).
DEFAULT_ALLOW = ("python.org", "wikipedia.org", "numpy.org", "scipy.org", "pydata.org", "pytorch.org")
MAX_EDIT = 3


def _domains(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(d, str) for d in value):
        raise TracebankError(f"links {name}: a list of registered domains such as ['example.com'], got {value!r}")
    domains = tuple(d.strip().lower().removeprefix("www.") for d in value)
    bad = [d for d in domains if "." not in d or "/" in d or " " in d or d.startswith(".") or d.endswith(".")]
    if bad:
        raise TracebankError(f"links {name}: {bad} are not domains; write registered domains such as 'example.com'")
    return domains


@dataclass(frozen=True)
class LinksOptions:
    allow: tuple[str, ...] = DEFAULT_ALLOW  # registered domains never flagged (subdomains included)
    deny: tuple[str, ...] = ()  # registered domains always flagged, kind "deny" (even in the prompt or allow)
    brands: tuple[str, ...] = ()  # official domains of more brands, added to data/brands.txt, for look-alikes
    max_edit: int = 1  # edits (Damerau-Levenshtein) that make a label a look-alike of a brand's; 2 only for long names

    def __post_init__(self) -> None:
        for name in ("allow", "deny", "brands"):
            object.__setattr__(self, name, _domains(getattr(self, name), name))
        edit = self.max_edit
        if isinstance(edit, bool) or not isinstance(edit, int) or not 0 <= edit <= MAX_EDIT:
            raise TracebankError(f"links max_edit: a whole number from 0 to {MAX_EDIT}, got {edit!r}")


class Links:
    name = "links"
    version = "1"
    reads = ("trace_id", "messages", "rationale")
    Options = LinksOptions

    def __init__(self, options: LinksOptions | None = None):
        self.options = options or LinksOptions()
        self.brands = Brands(self.options.brands, self.options.max_edit)
        self.shorteners = read_list("shorteners.txt")
        self.allow = frozenset(self.options.allow)
        self.deny = frozenset(self.options.deny)

    def score(self, table: pa.Table) -> pa.Table:
        rows = table.select(list(self.reads)).to_pylist()
        judged = [self.judge(row["rationale"], prompt_text(row["messages"])) for row in rows]
        found = [worst for _, worst in judged]
        metrics = {
            "links": pa.array([count for count, _ in judged], pa.int64()),
            "suspicion": pa.array([w[0] if w else None for w in found], pa.string()),
        }
        return safety_result(
            [row["trace_id"] for row in rows],
            self.name,
            [None if count is None else int(worst is not None) for count, worst in judged],
            [f"{w[1].host} ({w[0]})" if w else None for w in found],
            [(w[1].start, w[1].end) if w else None for w in found],
            metrics,
        )

    def judge(self, rationale: str | None, prompt: str) -> tuple[int | None, tuple[str, Link] | None]:
        """(links found, the worst flagged (kind, link) or None) of one rationale; (None, None) without one."""
        if rationale is None:
            return None, None
        links = find_links(rationale, self.known)
        return len(links), self.worst(links, prompt)

    def known(self, domain: str) -> bool:
        """Whether a bare name on a code-like suffix still counts as a domain: one this scorer knows."""
        return (
            domain in self.shorteners
            or domain in self.deny
            or domain in self.allow
            or bool(self.brands.lookalike(domain))
        )

    def worst(self, links: list[Link], prompt: str) -> tuple[str, Link] | None:
        """The worst (kind, link) among ``links`` that are flagged, the first of equals; None when none is."""
        prompt_domains = {link.domain for link in find_links(prompt, lambda domain: True)} if links else set()
        best: tuple[int, Link] | None = None
        for link in links:
            kind = self.kind(link, prompt_domains)
            if kind is not None and (best is None or KINDS.index(kind) < best[0]):
                best = (KINDS.index(kind), link)
        return (KINDS[best[0]], best[1]) if best else None

    def kind(self, link: Link, prompt_domains: set[str]) -> str | None:
        """What ``link`` is (a name in ``KINDS``), or None when it is allowed or in the prompt."""
        if link.domain in self.deny:
            return "deny"
        if link.domain in self.allow or link.domain in prompt_domains:
            return None
        if self.brands.lookalike(link.host):
            return "lookalike"
        if not link.host.isascii() or "xn--" in link.host:
            return "punycode"
        if not link.label:
            return "ip_host"
        return "shortener" if link.domain in self.shorteners else "link"
