"""bench/chunk_quality.py runs end to end on tiny files and reports what it promises."""

from pathlib import Path

import orjson

from tests.bench import load


def write(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def test_bench_reports_boundaries_wrong_steps_and_flags(tmp_path, capsys):
    train = write(tmp_path / "train.jsonl", [
        {"question": "How many?", "answer": "Tom has 3+4 = <<3+4=7>>7 apples.\nHe eats 2 so 7-2 = <<7-2=5>>5 are left.\n#### 5"},
        {"question": "How much?", "answer": "She pays 2*3 = $<<2*3=6>>6\nThen she pays 6+1 = $<<6+1=7>>7\n#### 7"},
    ])  # fmt: skip
    labeled = write(tmp_path / "labeled.jsonl", [{
        "question": "How many?", "ground_truth": "#### 5",
        "a": {"is_correct": True, "solution": "He has 3 + 4 = <<3+4=7>>7.\nThen 7 - 2 = <<7-2=5>>5.\nA: 5"},
        "b": {"is_correct": False, "solution": "He has 3 + 4 = <<3+4=8>>8.\nThen 8 - 2 = <<8-2=6>>6.\nA: 6"},
    }])  # fmt: skip
    load("chunk_quality").main(["--train", str(train), "--labeled", str(labeled), "--embed-limit", "0"])
    out = capsys.readouterr().out
    assert "by 'space', embeddings off: precision 1.000, recall 1.000, F1 1.000" in out
    assert "by 'none', embeddings off: precision 1.000, recall 1.000, F1 1.000" in out
    assert "precision 1.000, recall 1.000" in out and "2 labeled solutions, 1 with a wrong annotation" in out
    assert "0 of the 1 is_correct=true solutions flagged" in out
    assert "with annotations: 0 of 2 flagged" in out
