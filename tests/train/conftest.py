import pytest
import yaml

from tests.fakes import FakeTeacher
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.filters.runner import ScoreConfig, score

MIXED_POLICY = {
    "name": "teacher-correct",
    "rules": [
        {"name": "student", "when": "policy = 'student'", "action": "drop"},
        {"name": "wrong", "when": "NOT coalesce(correctness.passed, false)", "action": "drop"},
    ],
    "splits": {"train": 1.0},
}


@pytest.fixture
def mixed_release(location, math_dataset):
    """Teacher traces (samples 0, 2 correct; 1, 3 wrong) and student traces (0 correct, 1 wrong), released as v1."""
    build(location, BuildConfig(math_dataset, samples=4), FakeTeacher())
    build(location, BuildConfig(math_dataset, samples=2, policy="student", model="student-model"), FakeTeacher())
    score(location, ScoreConfig(math_dataset))
    releases.curate(location, math_dataset, Policy.from_dict(MIXED_POLICY), yaml.safe_dump(MIXED_POLICY), "mixed")
    return f"{math_dataset}@v1"
