"""The curation policy: ordered SQL rules decide keep/drop, with a reason, for every trace.

A policy YAML looks like::

    name: correct-only
    rules:                       # first matching rule decides
      - {name: failed,  when: "finish_reason = 'error'", action: drop}
      - {name: wrong,   when: "correctness.passed = false", action: drop, reason: "correctness.reason"}
      - {name: dup,     when: "exact_dup.is_duplicate = 1", action: drop}
    default: keep                # for traces no rule matches
    max_per_prompt: 4            # quota on kept traces per prompt (rule 'quota')
    order_by: "trace_id"         # which kept traces fill the quota first
    # or, instead of max_per_prompt: the k most different kept traces (curate/select.py)
    # select: {method: diverse, k: 4}
    splits: {train: 0.9, test: 0.1}
    use_split_hints: false       # true: a prompt's split_hint, when it names a split, wins

Predicates see every trace column (closed-loop ones too: ``round``, ``hinted``, ``lineage``), the
prompt's ``task``, ``reference`` and ``split_hint``, and one struct per filter
(``correctness.passed``, ``correctness.reason``, ``correctness.correct``, ...).
A filter that has not scored a trace is NULL there, and a NULL predicate does not match.
Splits are assigned per prompt from a hash of its id: no prompt is ever in two splits. Every
kept-by-rule trace's ``rank`` (the order in which it fills its prompt's quota) is stored with its
decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tracebank.config import check_keys, field_names, load_yaml
from tracebank.curate.select import Select, from_value, select_ranks
from tracebank.curate.sql_guard import check_expression
from tracebank.errors import TracebankError
from tracebank.hashing import unit_interval, unit_interval_sql

NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
ACTIONS = ("keep", "drop")
RESERVED_RULES = ("default", "quota")


@dataclass(frozen=True)
class Rule:
    name: str
    when: str  # SQL predicate
    action: str  # keep | drop
    reason: str | None = None  # SQL expression for the reason; default: the rule's name

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name) or self.name in RESERVED_RULES:
            raise TracebankError(f"rule name {self.name!r}: use lower_snake_case, not {' or '.join(RESERVED_RULES)}")
        if not isinstance(self.when, str) or not self.when.strip():
            raise TracebankError(f"rule {self.name!r}: 'when' must be a SQL predicate")
        if self.action not in ACTIONS:
            raise TracebankError(f"rule {self.name!r}: action must be keep or drop, got {self.action!r}")
        if self.reason is not None and (not isinstance(self.reason, str) or not self.reason.strip()):
            raise TracebankError(f"rule {self.name!r}: 'reason' must be a SQL expression")
        check_expression(self.when, f"rule {self.name!r} when")
        if self.reason is not None:
            check_expression(self.reason, f"rule {self.name!r} reason")


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    default: str = "keep"
    max_per_prompt: int | None = None
    order_by: str = "trace_id"
    splits: tuple[tuple[str, float], ...] = (("train", 0.9), ("test", 0.1))
    use_split_hints: bool = False
    split_salt: str = "tracebank-splits"
    select: Select | None = None  # diverse selection of max k kept traces per prompt, instead of max_per_prompt

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TracebankError("policy needs a name")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise TracebankError(f"policy {self.name!r}: rule names must be unique, got {names}")
        if self.default not in ACTIONS:
            raise TracebankError(f"policy {self.name!r}: default must be keep or drop, got {self.default!r}")
        if self.max_per_prompt is not None and (not isinstance(self.max_per_prompt, int) or self.max_per_prompt < 1):
            raise TracebankError(f"policy {self.name!r}: max_per_prompt must be a positive integer")
        if self.select is not None and self.max_per_prompt is not None:
            raise TracebankError(
                f"policy {self.name!r}: give select.k or max_per_prompt, not both (both cap traces per prompt)"
            )
        if not self.splits or any(
            not NAME.match(str(s)) or not isinstance(r, (int, float)) or r <= 0 for s, r in self.splits
        ):
            raise TracebankError(f"policy {self.name!r}: splits must map lower_snake_case names to positive ratios")
        if abs(sum(r for _, r in self.splits) - 1.0) > 1e-9:
            raise TracebankError(
                f"policy {self.name!r}: split ratios must sum to 1, got {sum(r for _, r in self.splits)}"
            )
        if not isinstance(self.order_by, str) or not self.order_by.strip():
            raise TracebankError(f"policy {self.name!r}: order_by must be a SQL expression")
        check_expression(self.order_by, f"policy {self.name!r} order_by")

    @classmethod
    def from_dict(cls, data: Any, where: str = "policy") -> Policy:
        if not isinstance(data, dict):
            raise TracebankError(f"{where}: expected a mapping with name, rules, splits")
        check_keys(data, field_names(cls), where)
        rules = data.get("rules") or []
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise TracebankError(f"{where}: rules must be a list of mappings")
        rule_keys = {f.name for f in fields(Rule)}
        for rule in rules:
            if set(rule) - rule_keys or not {"name", "when", "action"} <= set(rule):
                raise TracebankError(
                    f"{where}: rule {rule.get('name', rule)!r} needs name, when, action (and optional reason)"
                )
        splits = data.get("splits", dict(cls.splits))
        if not isinstance(splits, dict):
            raise TracebankError(f"{where}: splits must map split names to ratios")
        select = from_value(data.get("select"), where)
        return cls(
            **{**data, "rules": tuple(Rule(**r) for r in rules), "splits": tuple(splits.items()), "select": select}
        )

    @classmethod
    def load(cls, path: str | Path) -> tuple[Policy, str]:
        """The policy and its YAML text (stored with the release)."""
        data = load_yaml(path, "policy file")
        return cls.from_dict(data, str(path)), Path(path).read_text()

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["rules"] = [{f.name: getattr(r, f.name) for f in fields(Rule)} for r in self.rules]
        data["splits"] = dict(self.splits)
        data["select"] = {f.name: getattr(self.select, f.name) for f in fields(Select)} if self.select else None
        return data

    @property
    def quota(self) -> int | None:
        return self.select.k if self.select else self.max_per_prompt

    def split_of(self, prompt_id: str, split_hint: str | None) -> str:
        if self.use_split_hints and split_hint in dict(self.splits):
            return split_hint
        point, total = unit_interval(self.split_salt, prompt_id), 0.0
        for split, ratio in self.splits:
            total += ratio
            if point < total:
                return split
        return self.splits[-1][0]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _case(whens: list[str], otherwise: str, subject: str = "") -> str:
    return f"CASE {subject} {' '.join(whens)} ELSE {otherwise} END" if whens else otherwise


def _filter_columns(con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[str, str]:
    """One struct column per filter: passed, reason and each metric (number or text)."""
    kinds = con.execute(
        "SELECT filter, metric, count(value) > 0 FROM scores WHERE dataset = ? GROUP BY ALL ORDER BY ALL", [dataset]
    ).fetchall()
    by_filter: dict[str, list[tuple[str, bool]]] = {}
    for filter_name, metric, numeric in kinds:
        by_filter.setdefault(filter_name, []).append((metric, numeric))
    joins = []
    for i, (filter_name, metrics) in enumerate(by_filter.items()):
        members = ["passed := bool_and(passed)", "reason := min(reason)"] + [
            f""""{m}" := {"max(value)" if numeric else "max(detail)"} FILTER (WHERE metric = '{m}')"""
            for m, numeric in metrics
        ]
        joins.append(
            f"""LEFT JOIN (SELECT trace_id, struct_pack({", ".join(members)}) AS "{filter_name}"
                FROM scores WHERE dataset = $dataset AND filter = '{filter_name}' GROUP BY trace_id) f{i}
                ON f{i}.trace_id = t.trace_id"""
        )
    selects = "".join(f', f{i}."{name}"' for i, name in enumerate(by_filter))
    return selects, "\n".join(joins)


def candidates_sql(con: duckdb.DuckDBPyConnection, dataset: str) -> str:
    """SQL of the relation rules are evaluated over (needs ``$dataset`` bound)."""
    selects, joins = _filter_columns(con, dataset)
    return f"""
        SELECT t.*, p.task, p.reference, p.split_hint{selects}
        FROM traces t JOIN prompts p ON p.prompt_id = t.prompt_id
        {joins}
        WHERE t.dataset = $dataset
    """


def _check_expressions(con: duckdb.DuckDBPyConnection, policy: Policy, candidates: str, dataset: str) -> None:
    checks = [(f"rule {r.name!r} when", r.when) for r in policy.rules]
    checks += [(f"rule {r.name!r} reason", r.reason) for r in policy.rules if r.reason]
    checks.append(("order_by", policy.order_by))
    for what, expression in checks:
        try:
            con.execute(f"SELECT {expression} FROM ({candidates}) LIMIT 0", {"dataset": dataset})
        except duckdb.Error as error:
            raise TracebankError(f"policy {policy.name!r}: {what}: {str(error).splitlines()[0]}") from None


def decide(con: duckdb.DuckDBPyConnection, dataset: str, policy: Policy) -> pa.Table:
    """One decision per trace of ``dataset``: trace_id, prompt_id, keep, rule, reason, split, rank.

    With ``select``, vectors missing from the ``embeddings`` table are computed but not stored
    (``tracebank curate`` stores them with the release).
    """
    try:
        ruled = prepare(con, dataset, policy)[0]
        return con.execute(*decide_sql(con, dataset, policy, ruled)).to_arrow_table()
    except duckdb.Error as error:
        raise TracebankError(f"policy {policy.name!r}: {str(error).splitlines()[0]}") from None


def prepare(con: duckdb.DuckDBPyConnection, dataset: str, policy: Policy) -> tuple[str | None, pa.Table | None]:
    """For a ``select`` policy: the rules' verdicts in temp table ``_ruled`` and diverse ranks in ``_select_ranks``.

    Returns the ruled table's name for :func:`decide_sql` (None without ``select``) and the
    embeddings rows computed for traces that had none.
    """
    if policy.select is None:
        return None, None
    con.execute(f"CREATE OR REPLACE TEMP TABLE _ruled AS {ruled_sql(con, dataset, policy)}", {"dataset": dataset})
    ranks, new_vectors = select_ranks(con, dataset, policy.select, "_ruled")
    con.register("_select_ranks_arrow", ranks)
    con.execute("CREATE OR REPLACE TEMP TABLE _select_ranks AS SELECT * FROM _select_ranks_arrow")
    con.unregister("_select_ranks_arrow")
    return "_ruled", new_vectors


def ruled_sql(con: duckdb.DuckDBPyConnection, dataset: str, policy: Policy) -> str:
    """Every trace with the first matching rule, its reason, keep, and its ``order_by`` value (``$dataset`` bound)."""
    candidates = candidates_sql(con, dataset)
    _check_expressions(con, policy, candidates, dataset)
    rule_case = _case([f"WHEN coalesce(({r.when}), false) THEN '{r.name}'" for r in policy.rules], "'default'")
    reason_case = _case(
        [
            f"WHEN coalesce(({r.when}), false) THEN coalesce(CAST(({r.reason or repr(r.name)}) AS VARCHAR), '{r.name}')"
            for r in policy.rules
        ],
        "'default'",
    )
    keep_case = _case(
        [f"WHEN '{r.name}' THEN {r.action == 'keep'}" for r in policy.rules], str(policy.default == "keep"), "rule"
    )
    return f"""
        SELECT *, {keep_case} AS keep FROM (
            SELECT trace_id, prompt_id, split_hint, ({policy.order_by}) AS _order,
                   {rule_case} AS rule,
                   {reason_case} AS reason
            FROM ({candidates})
        )
    """


def decide_sql(
    con: duckdb.DuckDBPyConnection, dataset: str, policy: Policy, ruled: str | None = None
) -> tuple[str, dict[str, str]]:
    """The decisions query and its parameters, after checking every rule's SQL.

    ``ruled`` names a table already holding :func:`ruled_sql`'s rows (as :func:`prepare` makes
    for ``select`` policies, whose ranks come from ``_select_ranks``).
    """
    source = ruled or f"({ruled_sql(con, dataset, policy)})"
    if policy.select:
        ranked = f"SELECT k.*, CASE WHEN keep THEN coalesce(s._rank, {2**31 - 1}) END AS _rank FROM {source} k LEFT JOIN _select_ranks s USING (trace_id)"
        beyond = f"'select: {policy.select.method} k={policy.select.k}, rank ' || _rank"
    else:
        ranked = f"SELECT *, CASE WHEN keep THEN row_number() OVER (PARTITION BY prompt_id, keep ORDER BY _order, trace_id) END AS _rank FROM {source}"
        beyond = f"'max_per_prompt={policy.max_per_prompt}'"
    quota = policy.quota or 2**31
    return (
        f"""
        WITH ranked AS ({ranked})
        SELECT trace_id, prompt_id,
               keep AND _rank <= {quota} AS keep,
               CASE WHEN keep AND _rank > {quota} THEN 'quota' ELSE rule END AS rule,
               CASE WHEN keep AND _rank > {quota} THEN {beyond} ELSE reason END AS reason,
               {_split_sql(policy)} AS split,
               CAST(_rank AS INTEGER) AS rank
        FROM ranked ORDER BY trace_id
    """,
        ({} if ruled else {"dataset": dataset}),
    )


def _split_sql(policy: Policy) -> str:
    """SQL for :meth:`Policy.split_of` over ``prompt_id`` and ``split_hint`` (same result, row by row)."""
    names = [split for split, _ in policy.splits]
    whens = (
        [f"WHEN split_hint IN ({', '.join(map(_literal, names))}) THEN split_hint"] if policy.use_split_hints else []
    )
    point, total = unit_interval_sql(_literal(policy.split_salt), "prompt_id"), 0.0
    for split, ratio in policy.splits[:-1]:
        total += ratio
        whens.append(f"WHEN {point} < {total!r} THEN {_literal(split)}")
    return _case(whens, _literal(names[-1]))
