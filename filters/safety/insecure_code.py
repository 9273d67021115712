"""Insecure code: static analysis of the Python a trace carries, with bandit's rules run in-process.

Which Python: every fenced block tagged ``python``/``py``/``python3`` or bare, the code
``tracebank.tasks.code.extract_code`` finds (a raw completion or an unfenced program), runs of
code-like lines outside fences (an ``import``, a ``def``, an assignment or a call at the start of
a line), and imports, calls and ``name = "literal"`` written inside prose, in backticks or not
(``...then call os.system(cmd) to...``). Every piece is parsed on its own; one that does not parse (a truncated
reply, prose inside a fence) is cut into the longest runs of lines that do. The pieces of a
trace, in order, make one module, so an alias imported in one block (``import subprocess as
sp``) is known in the next; a preamble imports the modules the rules know by name, so a lone
``yaml.load(f)`` in a sentence is judged like one after ``import yaml``. ``# nosec`` comments
are ignored: a poisoned trace could carry one to hide its line.

What flags (see :class:`InsecureCodeOptions`): a rule in ``include`` (hard-coded passwords, shell
commands), or one at or above ``min_severity`` and ``min_confidence`` that is not in ``exclude``
(assert, ``import subprocess``, subprocess without a shell, requests without a timeout, XML
parsers, hard-coded ``/tmp`` paths: noise, never a poisoning). ``eval``/``exec`` of a literal
string do not flag; a hard-coded password flags only when the literal looks like one (no
spaces, four characters at least; for ``token``-like names, letters and digits mixed), since
bandit's name rule alone flags a tokenizer's ``token = "("``. Three rules of this module's own
cover what bandit misses: X301 (``pd.read_pickle``, ``allow_pickle=True``, ``yaml.unsafe_load``),
X501 (``ssl.CERT_NONE``, ``check_hostname = False``), X602 (``Popen(["sh", "-c", cmd])``); and
three catch shell commands anywhere in the text (a ``bash`` block, a sentence): X605 ``curl ... |
sh``, X103 ``chmod 777``, X502 ``curl -k`` / ``wget --no-check-certificate``.

Text the prompt already holds is not held against its trace: a flagged line the prompt contains
(HumanEval's signature and docstring are quoted by its traces), and, for code tasks, a rule whose
subject the prompt names (``md5`` or ``sha1`` for a weak hash, ``eval``/``exec``, ``pickle``,
``marshal``, ``yaml``): the prompt asked for it.

A trace with no Python (a math or text trace) carries no insecure code: ``flagged`` 0 with
``code_blocks`` 0. A code task whose rationale holds nothing that parses as Python cannot be
judged: ``flagged`` null, reason ``no_code``. Evidence names the rule, its name and the line of
the rationale (``B602 subprocess_popen_with_shell_equals_true line 4``); the span is that line.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
from dataclasses import dataclass

import pyarrow as pa
from bandit.core import config as bandit_config
from bandit.core import constants as bandit_constants
from bandit.core import extension_loader, meta_ast, node_visitor
from bandit.core import manager as bandit_manager
from bandit.core import metrics as bandit_metrics

from tracebank.errors import TracebankError
from tracebank.filters.safety.pii import PII, PIIOptions
from tracebank.filters.safety.python_spans import PARSE_ERRORS, CodePiece, code_pieces, stripped_span
from tracebank.filters.safety.safety import prompt_text, safety_result

LEVELS = ("low", "medium", "high")
HARDCODED_PASSWORD = ("B105", "B106", "B107")
SHELL = ("B602", "B605")  # a command run by a shell, even a literal one (`os.system("curl ... | sh")`)
NOISE = (
    "B101",  # assert: tests and invariants, never an injection
    "B108",  # a hard-coded /tmp path
    "B110", "B112",  # try/except/pass
    "B113",  # requests without a timeout: robustness, not security
    "B310",  # urlopen: audits schemes, fires on every fetch
    "B311",  # random
    "B313", "B314", "B315", "B316", "B317", "B318", "B319",  # XML parsers
    "B403", "B404",  # import pickle, import subprocess
    "B405", "B406", "B407", "B408", "B409",  # XML imports
    "B603", "B607",  # subprocess without a shell, a command by its short name
    "B615",  # Hugging Face download without a pinned revision
)  # fmt: skip

# Modules the rules know by name: imported (as themselves) before a trace's code, line 1.
KNOWN_MODULES = "os subprocess pickle marshal shelve yaml hashlib requests tempfile torch ssl tarfile paramiko flask"
PREAMBLE = "import " + ", ".join(KNOWN_MODULES.split()) + "\n"
# For code tasks: a prompt that names a rule's subject asked for what the rule flags.
PROMPT_ASKS = {
    "B324": re.compile(r"\b(?:md5|sha-?1)\b", re.IGNORECASE),
    "B303": re.compile(r"\b(?:md5|sha-?1)\b", re.IGNORECASE),
    "B307": re.compile(r"\beval", re.IGNORECASE),
    "B102": re.compile(r"\bexec\b", re.IGNORECASE),
    "B301": re.compile(r"\bpickl|\bshelve\b|\bdill\b", re.IGNORECASE),
    "B302": re.compile(r"\bmarshal", re.IGNORECASE),
    "B506": re.compile(r"\byaml\b", re.IGNORECASE),
}
# Rules of this module's own, for what bandit misses (X + the number of bandit's nearest rule).
_KEYS = PII(PIIOptions(kinds=("secret",)))  # key and token shapes (detect-secrets' plugins), one detector
OWN_RULES = {
    "X301": "pickle_read_by_library",
    "X402": "risky_module_imported_by_name",
    "X106": "hardcoded_key_or_token",
    "X311": "weak_random_for_a_secret",
    "X501": "tls_verification_off",
    "X602": "shell_started_by_argv",
    "X605": "download_piped_to_shell",
    "X103": "chmod_777_command",
    "X502": "tls_off_on_command_line",
}
# Shell commands written anywhere in a trace (a ```bash block, a sentence): never in clean traces.
SHELL_RULES = {
    "X605": re.compile(r"\b(?:curl|wget)\b[^\n|]*\|\s*(?:sudo\s+)?(?:ba|z|k|da)?sh\b"),
    "X103": re.compile(r"\bchmod\s+(?:-R\s+)?0?777\b"),
    "X502": re.compile(r"\b(?:curl\b[^\n]*\s(?:-k|--insecure)|wget\b[^\n]*--no-check-certificate)\b"),
}
# Attributes, keywords and option keys that turn a TLS or signature check off when set to False.
VERIFY_FLAGS = ("verify", "check_hostname", "verify_signature", "verify_exp", "verify_ssl", "ssl_verify")
# Modules whose import by name (``__import__("os")``) hides a call the rules would see after ``import os``.
RISKY_MODULES = frozenset({"os", "subprocess", "pickle", "marshal", "shelve", "pty", "ctypes", "dill", "commands"})
SHELLS = ("sh", "bash", "zsh", "dash", "ksh", "cmd", "cmd.exe", "powershell")
TOKEN_NAME = re.compile(r"token", re.IGNORECASE)
SECRET_NAME = re.compile(r"token|secret|passw|pwd|api_?key|salt|nonce|otp|session_?id|csrf", re.IGNORECASE)
PASSWORD_NAME = re.compile(r"pass|pwd|secret", re.IGNORECASE)


def _rule_names() -> dict[str, str]:
    manager = extension_loader.MANAGER
    names = {rule: plugin.name for rule, plugin in manager.plugins_by_id.items()}
    names.update({rule: entry["name"] for rule, entry in manager.blacklist_by_id.items()})
    return names | OWN_RULES


RULE_NAMES = _rule_names()


def _rule_ids(value: object, name: str) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)):
        raise TracebankError(f"insecure_code {name}: a list of bandit rule ids such as B602, got {value!r}")
    unknown = [v for v in values if not isinstance(v, str) or v.upper() not in RULE_NAMES]
    if unknown:
        known = f"bandit's, listed by `bandit -h`, or {', '.join(OWN_RULES)}"
        raise TracebankError(f"insecure_code {name}: unknown rule ids {unknown} ({known})")
    return tuple(dict.fromkeys(v.upper() for v in values))


@dataclass(frozen=True)
class InsecureCodeOptions:
    min_severity: str = "medium"  # bandit severity (low, medium, high) at or above which a rule flags
    min_confidence: str = "low"  # bandit confidence (low, medium, high) at or above which a rule flags
    include: tuple[str, ...] = HARDCODED_PASSWORD + SHELL  # rule ids that flag whatever their severity
    exclude: tuple[str, ...] = NOISE  # rule ids that never flag

    def __post_init__(self) -> None:
        for name in ("min_severity", "min_confidence"):
            level = getattr(self, name)
            if not isinstance(level, str) or level.lower() not in LEVELS:
                raise TracebankError(f"insecure_code {name}: one of {', '.join(LEVELS)}, got {level!r}")
            object.__setattr__(self, name, level.lower())
        for name in ("include", "exclude"):
            object.__setattr__(self, name, _rule_ids(getattr(self, name), name))
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise TracebankError(f"insecure_code: rule ids {both} are in both include and exclude; keep each in one")


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int  # 1-based line of the rationale
    span: tuple[int, int]  # the flagged line's characters in the rationale


class InsecureCode:
    name = "insecure_code"
    version = "1"
    reads = ("trace_id", "rationale", "task", "messages")
    Options = InsecureCodeOptions

    def __init__(self, options: InsecureCodeOptions | None = None):
        self.options = options or InsecureCodeOptions()
        self._tests = bandit_manager.BanditManager(bandit_config.BanditConfig(), "file").b_ts

    def score(self, table: pa.Table) -> pa.Table:
        columns = table.select(list(self.reads)).to_pydict()
        rows = zip(columns["rationale"], columns["task"], columns["messages"], strict=True)
        judged = [self.judge(rationale, task, messages) for rationale, task, messages in rows]
        firsts = [found[0] if found else None for _, found, _ in judged]
        metrics = {
            "issues": pa.array([None if flag is None else len(found) for flag, found, _ in judged], pa.int64()),
            "rule": pa.array([f.rule if f else None for f in firsts], pa.string()),
            "line": pa.array([f.line if f else None for f in firsts], pa.int64()),
            "code_blocks": pa.array([blocks for _, _, blocks in judged], pa.int64()),
        }
        flagged = [flag for flag, _, _ in judged]
        evidence = [f"{f.rule} {RULE_NAMES.get(f.rule, '')} line {f.line}" if f else None for f in firsts]
        spans = [f.span if f else None for f in firsts]
        result = safety_result(columns["trace_id"], self.name, flagged, evidence, spans, metrics)
        reasons = [
            "no_code" if flag is None and rationale is not None else reason
            for flag, rationale, reason in zip(flagged, columns["rationale"], result["reason"].to_pylist(), strict=True)
        ]
        return result.set_column(result.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))

    def judge(
        self, rationale: str | None, task: str | None, messages: list | None
    ) -> tuple[int | None, list, int | None]:
        """(flagged, findings, code blocks) of one trace: flagged is null without a rationale, or for a
        code task whose rationale holds no Python; 0 for another trace with none."""
        if rationale is None:
            return None, [], None
        code_task = task == "code"
        pieces = code_pieces(rationale, code_task)
        found = self.findings(rationale, pieces, prompt_text(messages), code_task)
        if not pieces and not found:
            return (None if code_task else 0), [], 0
        return int(bool(found)), found, len({piece.region for piece in pieces})

    def findings(self, rationale: str, pieces: list[CodePiece], prompt: str, code_task: bool) -> list[Finding]:
        """The flagging issues of the trace's code, in rationale order, one per (rule, line)."""
        hits = self._python_hits(pieces) + _shell_hits(rationale)
        found: dict[tuple[str, int], Finding] = {}
        for rule, (start, end) in hits:
            if rule in self.options.exclude or rationale[start:end] in prompt:
                continue  # the prompt quoted this line
            asks = PROMPT_ASKS.get(rule)
            if code_task and asks is not None and asks.search(prompt):
                continue
            line = rationale.count("\n", 0, start) + 1
            found.setdefault((rule, line), Finding(rule, line, (start, end)))
        return sorted(found.values(), key=lambda f: (f.span[0], f.rule))

    def _python_hits(self, pieces: list[CodePiece]) -> list[tuple[str, tuple[int, int]]]:
        """(rule, rationale span of its line) of each flagging issue in the pieces, joined as one module."""
        if not pieces:
            return []
        source, line_map = _module(pieces)
        try:
            results = self._scan(source)
            literal_lines, own = _own_checks(ast.parse(source))
        except PARSE_ERRORS:
            return []  # each piece parsed alone; a join that does not is left unjudged rather than guessed
        code_lines = source.splitlines()
        hits = [(r.test_id, r.lineno) for r in results if self._flags(r, literal_lines, code_lines)]
        return [(rule, line_map[line]) for rule, line in hits + own if line in line_map]  # not the preamble's

    def _scan(self, source: str) -> list:
        visitor = node_visitor.BanditNodeVisitor(
            "trace/trace.py",  # a path with a folder, so bandit can name the module
            io.BytesIO(source.encode("utf-8", "replace")),
            meta_ast.BanditMetaAst(),
            self._tests,
            False,
            {},  # no nosec lines: a `# nosec` comment must not hide a line
            bandit_metrics.Metrics(),
        )
        visitor.process(source)
        return visitor.tester.results

    def _flags(self, result, literal_lines: set[int], code_lines: list[str]) -> bool:
        rule = result.test_id
        if rule in self.options.exclude:
            return False
        if rule in ("B307", "B102") and result.lineno in literal_lines:
            return False
        if rule in HARDCODED_PASSWORD and not _secret_like(result.text, code_lines[result.lineno - 1]):
            return False
        if rule in self.options.include:
            return True
        return _at_least(result.severity, self.options.min_severity) and _at_least(
            result.confidence, self.options.min_confidence
        )


def _at_least(level: str, floor: str) -> bool:
    return bandit_constants.RANKING.index(level) >= bandit_constants.RANKING.index(floor.upper())


def _secret_like(issue_text: str, code_line: str) -> bool:
    """Whether a hard-coded-password issue's literal looks like a secret (bandit's message quotes it
    last: ``Possible hardcoded password: 'hunter2'``); the literal is read here and never kept. A
    ``token`` name (a tokenizer's ``token_type = "NUMBER"``) needs letters and digits mixed."""
    quoted = re.search(r"'(.*)'\s*$", issue_text or "", re.DOTALL)
    value = quoted.group(1) if quoted else ""
    if len(value) < 4 or re.search(r"\s", value) or not re.search(r"[A-Za-z0-9]", value):
        return False
    tokenish = TOKEN_NAME.search(code_line) and not PASSWORD_NAME.search(code_line)
    return not tokenish or bool(re.search(r"\d", value) and re.search(r"[A-Za-z]", value))


def _module(pieces: list[CodePiece]) -> tuple[str, dict[int, tuple[int, int]]]:
    """One module of the preamble and every piece in order; module line -> rationale span of that line."""
    parts, line_map, next_line = [PREAMBLE], {}, 2
    for piece in pieces:
        parts.append(piece.source if piece.source.endswith("\n") else piece.source + "\n")
        for offset, span in enumerate(piece.line_spans):
            if span is not None:
                line_map[next_line + offset] = span
        next_line += piece.source.count("\n") + (0 if piece.source.endswith("\n") else 1)
    return "".join(parts), line_map


def _own_checks(tree: ast.Module) -> tuple[set[int], list[tuple[str, int]]]:
    """Lines where every eval/exec runs a string literal (``eval("1 + 2")`` runs no input), and the
    (rule, line) of what bandit has no rule for: TLS checks turned off, pickles read by pandas or
    numpy, a shell started by its argv (``Popen(["sh", "-c", cmd])``)."""
    literal, other, own = set(), set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _KEYS.matches(node.value):
            own.append(("X106", node.lineno))  # API_KEY = "sk-...": bandit's password rules read names only
        if isinstance(node, ast.Assign) and _secret_from_random(node):
            own.append(("X311", node.lineno))
        cert_none = isinstance(node, ast.Attribute) and node.attr == "CERT_NONE"
        checks_off = isinstance(node, ast.Assign) and any(_sets_false(node, a) for a in VERIFY_FLAGS)
        if cert_none or checks_off or (isinstance(node, ast.Dict) and _dict_turns_off(node)):
            own.append(("X501", node.lineno))
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name in ("eval", "exec") and isinstance(node.func, ast.Name):
            (literal if node.args and isinstance(node.args[0], ast.Constant) else other).add(node.lineno)
        if name in ("read_pickle", "unsafe_load") or any(_is_true(k, "allow_pickle") for k in node.keywords):
            own.append(("X301", node.lineno))
        if any(k.arg in VERIFY_FLAGS[1:] and _is_constant(k.value, False) for k in node.keywords):
            own.append(("X501", node.lineno))  # jwt.decode(..., verify_signature=False); verify=False is bandit's B501
        risky = node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value) in RISKY_MODULES
        if name in ("__import__", "import_module") and risky:
            own.append(("X402", node.lineno))  # __import__("os").system(...): bandit sees no os import
        if _shell_argv([node.args, *(a.elts for a in node.args if isinstance(a, (ast.List, ast.Tuple)))]):
            own.append(("X602", node.lineno))
    return literal - other, own


def _sets_false(node: ast.Assign, attr: str) -> bool:
    targets = any(isinstance(t, ast.Attribute) and t.attr == attr for t in node.targets)
    return targets and _is_constant(node.value, False)


def _is_true(keyword: ast.keyword, name: str) -> bool:
    return keyword.arg == name and _is_constant(keyword.value, True)


def _secret_from_random(node: ast.Assign) -> bool:
    """``session_token = "".join(random.choice(...))``: a secret drawn from ``random``, which is predictable
    (bandit's B311 flags every use of ``random``, so it is noise; named for a secret, it is not)."""
    names = [t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in node.targets]
    if not any(SECRET_NAME.search(name) for name in names):
        return False
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "random"
        for call in ast.walk(node.value)
    )


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dict_turns_off(node: ast.Dict) -> bool:
    """``{"verify_signature": False}`` (jwt options) and the like."""
    return any(
        isinstance(key, ast.Constant) and key.value in VERIFY_FLAGS and _is_constant(value, False)
        for key, value in zip(node.keys, node.values, strict=True)
    )


def _shell_argv(sequences: list[list[ast.expr]]) -> bool:
    """Whether an argument list holds a shell followed by ``-c`` (``"sh", "-c"``, ``"/bin/bash", "-c"``)."""
    for items in sequences:
        words = [i.value if isinstance(i, ast.Constant) and isinstance(i.value, str) else None for i in items]
        for shell, flag in itertools.pairwise(words):
            if shell and flag in ("-c", "/c") and shell.rsplit("/", 1)[-1] in SHELLS:
                return True
    return False


def _shell_hits(text: str) -> list[tuple[str, tuple[int, int]]]:
    """(rule, span of its line) of shell commands anywhere in the text: a download piped to a shell,
    ``chmod 777``, TLS checks turned off on the command line."""
    hits = []
    for rule, pattern in SHELL_RULES.items():
        for match in pattern.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            line_end = text.find("\n", match.end())
            hits.append((rule, stripped_span(text, line_start, len(text) if line_end < 0 else line_end)))
    return hits
