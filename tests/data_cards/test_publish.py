import os

import datasets
import orjson
import pytest
import yaml

from tests.conftest import tree_fingerprint
from tracebank import catalog
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.data_cards.publish import MARKER, publish
from tracebank.errors import TracebankError

POLICY = {
    "name": "correct",
    "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}],
    "splits": {"train": 0.5, "test": 0.5},
}


@pytest.fixture
def released(location, scored):
    releases.curate(location, scored, Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "publish test")
    return ReleaseRef.parse(f"{scored}@v1")


def test_export_loads_offline_with_datasets(location, released, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    result = publish(location, released, str(tmp_path / "export"), license="mit")
    loaded = datasets.load_dataset(str(tmp_path / "export"), cache_dir=str(tmp_path / "hf-cache"))
    with catalog.Catalog(location) as cat:
        expected = dict(cat.sql("SELECT split, count(*) FROM decisions WHERE keep GROUP BY split").iter_rows())
        kept = set(cat.sql("SELECT trace_id FROM decisions WHERE keep")["trace_id"])
    assert {split: loaded[split].num_rows for split in loaded} == expected == result.splits
    rows = [row for split in loaded for row in loaded[split]]
    assert {row["trace_id"] for row in rows} == kept
    for row in rows:  # TRL conversational format: the prompt, then the trace as the assistant turn
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][-1]["content"] == row["rationale"] and row["question"] in row["messages"][0]["content"]
    readme = (tmp_path / "export" / "README.md").read_text()
    assert yaml.safe_load(readme.split("---")[1])["license"] == "mit"
    assert "(plots/pass_rate.png)" in readme and (tmp_path / "export" / "plots" / "pass_rate.png").stat().st_size > 1000
    assert orjson.loads((tmp_path / "export" / MARKER).read_bytes())["version"] == 1
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o777 & ~umask  # an ordinary folder, not a private one


def test_export_replaces_its_own_folder_but_never_a_foreign_one(location, released, tmp_path):
    publish(location, released, str(tmp_path / "export"))
    publish(location, released, str(tmp_path / "export"))  # a second export replaces the first
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    before = tree_fingerprint(foreign)
    with pytest.raises(TracebankError, match="not empty and holds no tracebank export"):
        publish(location, released, str(foreign))
    assert tree_fingerprint(foreign) == before


class RecordingHub:
    """The Hub client replaced at its boundary: records the upload plan and what the folder held."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        self.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, repo_type, commit_message):
        files = sorted(
            str(p.relative_to(folder_path)) for p in __import__("pathlib").Path(folder_path).rglob("*") if p.is_file()
        )
        self.calls.append(("upload_folder", repo_id, repo_type, commit_message, files))


def test_hub_upload_plan(location, released):
    hub = RecordingHub()
    result = publish(location, released, "hf://my-org/toy-traces", private=True, client=hub)
    assert result.target == "hf://my-org/toy-traces"
    assert hub.calls[0] == ("create_repo", "my-org/toy-traces", "dataset", True, True)
    _, repo_id, repo_type, message, files = hub.calls[1]
    assert (repo_id, repo_type, message) == ("my-org/toy-traces", "dataset", "tracebank: publish toy@v1")
    assert {"README.md", MARKER, "plots/pass_rate.png"} <= set(files)
    assert {f for f in files if f.startswith("data/")} == {f"data/{s}-00000-of-00001.parquet" for s in result.splits}


def test_hub_without_token_is_a_clear_error(location, released, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(TracebankError, match="no Hugging Face token"):
        publish(location, released, "hf://my-org/toy-traces")


def test_bad_hub_target(location, released):
    with pytest.raises(TracebankError, match="expected hf://ORG/NAME"):
        publish(location, released, "hf://just-a-name", client=RecordingHub())
