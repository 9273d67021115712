import pytest
import yaml

from tests.fakes import FakeTeacher
from tracebank import catalog
from tracebank.builders.runner import BuildConfig, build
from tracebank.curate import releases
from tracebank.curate.policy import Policy
from tracebank.curate.releases import ReleaseRef
from tracebank.data_cards.render import render_card, size_category
from tracebank.errors import TracebankError
from tracebank.filters.runner import ScoreConfig, score

POLICY = {"name": "correct-only", "rules": [{"name": "wrong", "when": "correctness.passed = false", "action": "drop"}]}


@pytest.fixture
def released(location, scored):
    releases.curate(location, scored, Policy.from_dict(POLICY), yaml.safe_dump(POLICY), "card test")
    return scored


def test_card_header_and_funnel_come_from_stored_counts(location, released, tmp_path):
    path = render_card(location, ReleaseRef.parse(f"{released}@v1"), tmp_path / "cards", license="mit")
    assert path == tmp_path / "cards" / released / "v1.md"
    text = path.read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["license"] == "mit" and header["size_categories"] == ["n<1K"]
    with catalog.Catalog(location) as cat:
        counts = cat.sql("SELECT split, rule, keep, count(*) AS n FROM decisions GROUP BY ALL ORDER BY ALL").to_dicts()
        kept_splits = sorted(cat.sql("SELECT DISTINCT split FROM decisions WHERE keep")["split"])
    assert [f["split"] for f in header["configs"][0]["data_files"]] == kept_splits
    for c in counts:
        assert f"| {c['split']} | {c['rule']} | {'keep' if c['keep'] else 'drop'} | {c['n']} |" in text
    assert "| teacher | smollm2-135m-instruct | fake | default |" in text
    assert "| correctness | 24 | 12 | 12 | 0 | 50.0% | 100.0% |" in text


def test_card_renders_the_same_after_later_commits(location, released, tmp_path):
    first = render_card(location, ReleaseRef.parse(released), tmp_path / "a").read_text()
    build(location, BuildConfig(released, samples=5), FakeTeacher())  # new data after the release
    score(location, ScoreConfig(released))
    assert render_card(location, ReleaseRef.parse(f"{released}@v1"), tmp_path / "b").read_text() == first


def test_default_location_and_unknown_version(location, released):
    assert render_card(location, ReleaseRef.parse(released)) == location.home / "cards" / released / "v1.md"
    with pytest.raises(TracebankError, match="no version v3"):
        render_card(location, ReleaseRef.parse(f"{released}@v3"))


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 50_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "n>1M",
    ]


def test_card_links_plots_drawn_from_the_release(location, released, tmp_path):
    path = render_card(location, ReleaseRef.parse(released), tmp_path / "cards")
    text = path.read_text()
    for name in ("trace_length", "pass_rate", "samples_per_prompt"):
        image = path.parent / "v1" / f"{name}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(v1/{name}.png)" in text


def test_chunk_metrics_appear_when_chunks_exist(location, released, tmp_path):
    import pyarrow as pa

    from tracebank import records

    with catalog.Catalog(location) as cat:
        kept = cat.sql("SELECT trace_id FROM decisions WHERE keep ORDER BY trace_id LIMIT 2")["trace_id"].to_list()
    rows = [
        {"trace_id": t, "dataset": released, "chunk_idx": i, "text": "step", "char_start": 0, "char_end": 4,
         "kind": kind, "score": score, "scorer": "test", "run_id": "r"}
        for t in kept for i, (kind, score) in enumerate([("reasoning", 0.5), ("compute", 1.0)])
    ]  # fmt: skip
    with catalog.writing(location, "chunks") as writer:
        writer.insert("chunks", pa.Table.from_pylist(rows, schema=records.CHUNKS))
    assert (
        "Rationale chunks" not in render_card(location, ReleaseRef.parse(f"{released}@v1"), tmp_path / "a").read_text()
    )
    renamed = {**POLICY, "name": "correct-again"}  # same decisions, a new release that sees the chunks
    releases.curate(location, released, Policy.from_dict(renamed), yaml.safe_dump(renamed), "with chunks")
    text = render_card(location, ReleaseRef.parse(f"{released}@v2"), tmp_path / "b").read_text()
    assert "| compute | 2 | 2 | 1.000 |" in text and "| reasoning | 2 | 2 | 0.500 |" in text
