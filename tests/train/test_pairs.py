import pytest

from tracebank import catalog
from tracebank.errors import TracebankError
from tracebank.train.pairs import PairsConfig, build_pairs, select_pairs

PAIR_CHECK = """
SELECT pr.*, c.policy AS c_policy, r.policy AS r_policy, c.prompt_id AS c_prompt, r.prompt_id AS r_prompt,
       sc.value AS c_correct, sr.value AS r_correct, dc.keep AS c_kept
FROM pairs pr
JOIN traces c ON c.trace_id = pr.chosen_trace_id JOIN traces r ON r.trace_id = pr.rejected_trace_id
JOIN scores sc ON sc.trace_id = c.trace_id AND sc.metric = 'correct'
JOIN scores sr ON sr.trace_id = r.trace_id AND sr.metric = 'correct'
JOIN decisions dc ON dc.trace_id = c.trace_id AND dc.version = pr.version
"""


def test_every_pair_is_correct_teacher_vs_wrong_student_of_one_prompt(location, mixed_release):
    result = build_pairs(location, PairsConfig(mixed_release))
    with catalog.Catalog(location) as cat:
        rows = cat.sql(PAIR_CHECK).to_dicts()
    assert result.pairs_new == len(rows) == 12  # 6 prompts x (2 correct teacher x 1 wrong student)
    for row in rows:
        assert row["c_policy"] == "teacher" and row["r_policy"] == "student" and row["kind"] == "teacher_vs_student"
        assert row["c_correct"] == 1 and row["r_correct"] == 0 and row["c_kept"]
        assert row["prompt_id"] == row["c_prompt"] == row["r_prompt"] and row["margin"] == 1.0


def test_pairs_are_stored_once(location, mixed_release):
    build_pairs(location, PairsConfig(mixed_release))
    again = build_pairs(location, PairsConfig(mixed_release))
    assert (again.pairs_new, again.pairs_existing, again.snapshot) == (0, 12, None)


def test_wrong_teacher_traces_can_be_rejected_too_and_quota_holds(location, mixed_release):
    result = build_pairs(location, PairsConfig(mixed_release, max_per_prompt=3, rejected_from=("student", "teacher")))
    with catalog.Catalog(location) as cat:
        rows = cat.sql(PAIR_CHECK).to_dicts()
        per_prompt = cat.sql("SELECT max(n) AS most FROM (SELECT count(*) AS n FROM pairs GROUP BY prompt_id)")["most"][
            0
        ]
    assert result.pairs_new == 18 and per_prompt == 3
    assert {r["r_policy"] for r in rows} == {"student", "teacher"} and all(r["r_correct"] == 0 for r in rows)


def test_selection_spreads_over_distinct_traces_first():
    rows = [{"prompt_id": "p", "trace_id": f"c{i}", "keep": True, "policy": "teacher", "correct": 1} for i in range(3)]
    rows += [
        {"prompt_id": "p", "trace_id": f"r{i}", "keep": False, "policy": "student", "correct": 0} for i in range(3)
    ]
    pairs = select_pairs(rows, PairsConfig("d@v1", max_per_prompt=3))
    assert [(c["trace_id"], r["trace_id"]) for c, r in pairs] == [("c0", "r0"), ("c1", "r1"), ("c2", "r2")]
    one_rejected = select_pairs(rows[:4], PairsConfig("d@v1", max_per_prompt=5))
    assert [(c["trace_id"], r["trace_id"]) for c, r in one_rejected] == [("c0", "r0"), ("c1", "r0"), ("c2", "r0")]


def test_no_student_traces_is_an_actionable_error(location, scored):
    from tests.train.conftest import MIXED_POLICY
    from tracebank.curate import releases
    from tracebank.curate.policy import Policy

    releases.curate(location, scored, Policy.from_dict(MIXED_POLICY), str(MIXED_POLICY), "teacher only")
    with pytest.raises(TracebankError, match="--policy student"):
        build_pairs(location, PairsConfig(f"{scored}@v1"))


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_per_prompt": 0}, "max_per_prompt"), ({"rejected_from": ("judge",)}, "rejected_from")]
)
def test_pairs_config_validation(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        PairsConfig("d@v1", **kwargs)
