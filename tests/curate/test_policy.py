import pytest

from tests.conftest import tree_fingerprint
from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy, decide
from tracebank.errors import TracebankError

CORRECT_ONLY = {
    "name": "correct-only",
    "rules": [
        {
            "name": "wrong",
            "when": "NOT coalesce(correctness.passed, false)",
            "action": "drop",
            "reason": "correctness.reason",
        },
        {"name": "dup", "when": "exact_dup.is_duplicate = 1", "action": "drop"},
    ],
    "splits": {"train": 0.5, "test": 0.5},
}


def _decide(location, dataset, policy):
    with catalog.Catalog(location) as cat:
        return decide(cat.con, dataset, policy).to_pylist()


def test_first_matching_rule_decides_with_its_reason(location, scored):
    decisions = _decide(location, scored, Policy.from_dict(CORRECT_ONLY))
    assert len(decisions) == 24 and len({d["trace_id"] for d in decisions}) == 24  # one decision per trace
    dropped = [d for d in decisions if not d["keep"]]
    assert {d["rule"] for d in dropped} == {"wrong"} and {d["reason"] for d in dropped} == {"mismatch"}
    assert all(d["rule"] == "default" for d in decisions if d["keep"])
    assert sum(d["keep"] for d in decisions) == 12


def test_quota_caps_kept_traces_per_prompt(location, scored):
    decisions = _decide(location, scored, Policy.from_dict({**CORRECT_ONLY, "max_per_prompt": 1}))
    kept = [d for d in decisions if d["keep"]]
    assert len(kept) == 6 and len({d["prompt_id"] for d in kept}) == 6
    assert {d["reason"] for d in decisions if d["rule"] == "quota"} == {"max_per_prompt=1"}


def test_every_prompt_is_in_exactly_one_split(location, scored):
    decisions = _decide(location, scored, Policy.from_dict(CORRECT_ONLY))
    splits = {}
    for d in decisions:
        splits.setdefault(d["prompt_id"], set()).add(d["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {next(iter(s)) for s in splits.values()} <= {"train", "test"}


def test_split_assignment_is_stable_across_policies(location, scored):
    first = {d["prompt_id"]: d["split"] for d in _decide(location, scored, Policy.from_dict(CORRECT_ONLY))}
    other = Policy.from_dict({**CORRECT_ONLY, "rules": [], "default": "drop"})
    assert {d["prompt_id"]: d["split"] for d in _decide(location, scored, other)} == first


def test_split_hints_win_when_enabled():
    policy = Policy.from_dict({**CORRECT_ONLY, "use_split_hints": True})
    assert policy.split_of("any-prompt", "test") == "test" and policy.split_of("any-prompt", "train") == "train"
    assert policy.split_of("any-prompt", "validation") in ("train", "test")


def test_rule_on_a_filter_that_never_ran_is_a_clear_error(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=1), FakeTeacher())
    policy = Policy.from_dict(
        {"name": "p", "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}]}
    )
    with pytest.raises(TracebankError, match="rule 'wrong' when"):  # no scores at all: no such column
        _decide(location, math_dataset, policy)


def test_unscored_trace_is_null_and_does_not_match(location, scored):
    build(location, BuildConfig(scored, samples=5), FakeTeacher())  # sample 4 of each prompt is not scored yet
    policy = Policy.from_dict(
        {"name": "p", "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}]}
    )
    decisions = {d["trace_id"]: d for d in _decide(location, scored, policy)}
    with catalog.Catalog(location) as cat:
        unscored = set(
            cat.sql("SELECT trace_id FROM traces WHERE trace_id NOT IN (SELECT trace_id FROM scores)")["trace_id"]
        )
    assert len(unscored) == 6
    assert all(decisions[t]["rule"] == "default" and decisions[t]["keep"] for t in unscored)


def test_bad_sql_names_the_rule(location, scored):
    policy = Policy.from_dict({"name": "p", "rules": [{"name": "typo", "when": "correctnes.passed", "action": "drop"}]})
    with pytest.raises(TracebankError, match="policy 'p': rule 'typo' when"):
        _decide(location, scored, policy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rules": [{"name": "Bad Name", "when": "true", "action": "drop"}]}, "lower_snake_case"),
        ({"rules": [{"name": "quota", "when": "true", "action": "drop"}]}, "lower_snake_case"),
        ({"rules": [{"name": "a", "when": "true", "action": "discard"}]}, "action must be keep or drop"),
        ({"rules": [{"name": "a", "when": "  ", "action": "drop"}]}, "'when' must be a SQL predicate"),
        (
            {"rules": [{"name": "a", "when": "x", "action": "drop"}, {"name": "a", "when": "y", "action": "keep"}]},
            "unique",
        ),
        ({"rules": [{"name": "a", "action": "drop"}]}, "needs name, when, action"),
        ({"default": "maybe"}, "default must be keep or drop"),
        ({"max_per_prompt": 0}, "max_per_prompt"),
        ({"splits": {"train": 0.5, "test": 0.4}}, "sum to 1"),
        ({"splits": {"train": 1.2, "test": -0.2}}, "positive ratios"),
        ({"splits": ["train"]}, "splits must map"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"name": ""}, "needs a name"),
    ],
)
def test_policy_validation(change, message):
    with pytest.raises(TracebankError, match=message):
        Policy.from_dict({**CORRECT_ONLY, **change})


def test_policy_file_errors(tmp_path):
    with pytest.raises(TracebankError, match="no such policy file"):
        Policy.load(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(TracebankError, match="invalid YAML"):
        Policy.load(tmp_path / "bad.yaml")


def test_sql_and_python_assign_the_same_split(location, scored):
    policy = Policy.from_dict({**CORRECT_ONLY, "splits": {"train": 0.6, "dev": 0.25, "test": 0.15}})
    decisions = _decide(location, scored, policy)
    assert all(d["split"] == policy.split_of(d["prompt_id"], None) for d in decisions)
    spread = [policy.split_of(str(i), None) for i in range(3000)]
    assert 0.55 < spread.count("train") / 3000 < 0.65 and 0.1 < spread.count("test") / 3000 < 0.2


HOSTILE = [
    ("1); DROP TABLE traces; SELECT (1", "not one SQL expression"),
    ("true; COPY traces TO '/tmp/stolen.csv'", "not one SQL expression"),
    ("true; ATTACH '/tmp/other.db' AS other", "not one SQL expression"),
    ("(SELECT count(*) FROM read_text('/etc/passwd')) > 0", "table functions"),
    ("(SELECT count(*) FROM '/etc/passwd') > 0", "only the catalog's tables"),
    ("(SELECT count(*) FROM glob('/*')) > 0", "table functions"),
    ("getenv('OPENAI_API_KEY') IS NOT NULL", r"getenv\(\) reaches outside"),
    ("current_setting('home_directory') = ''", r"current_setting\(\) reaches outside"),
    ("(SELECT count(*) FROM ducklake_snapshots('lake')) > 0", "table functions"),
]


@pytest.mark.parametrize(("when", "message"), HOSTILE)
def test_policy_sql_may_read_but_never_write_or_reach_out(location, scored, tmp_path, when, message):
    before = tree_fingerprint(location.home)
    for rule in ({"name": "evil", "when": when, "action": "drop"}, {"name": "evil", "when": "true",
                 "action": "drop", "reason": when}):  # fmt: skip
        with pytest.raises(TracebankError, match=message):
            Policy.from_dict({**CORRECT_ONLY, "rules": [rule]})
    with pytest.raises(TracebankError, match=message):
        Policy.from_dict({**CORRECT_ONLY, "order_by": when})
    assert tree_fingerprint(location.home) == before and not (tmp_path / "stolen.csv").exists()


def test_subqueries_over_catalog_tables_stay_allowed(location, scored):
    rule = {"name": "scored_twice", "action": "drop",
            "when": "(SELECT count(*) FROM scores s WHERE s.trace_id = trace_id AND s.filter = 'correctness') > 5"}  # fmt: skip
    result = releases.curate(location, scored, Policy.from_dict({**CORRECT_ONLY, "rules": [rule]}), "p", "m")
    assert result.created
