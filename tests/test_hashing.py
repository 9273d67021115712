from tracebank import hashing

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
PARAMS = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 64, "seed": 0}


def test_canonical_json_ignores_key_order():
    assert hashing.canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]}) == hashing.canonical_json(
        {"a": [1, {"x": 1, "y": 2}], "b": 1}
    )


def test_request_key_changes_with_every_input():
    base = hashing.request_key("m", MESSAGES, PARAMS, 0)
    assert base == hashing.request_key("m", MESSAGES, dict(reversed(PARAMS.items())), 0)
    variants = [
        hashing.request_key("other", MESSAGES, PARAMS, 0),
        hashing.request_key("m", [{"role": "user", "content": "What is 2 + 3?"}], PARAMS, 0),
        hashing.request_key("m", MESSAGES, {**PARAMS, "temperature": 0.8}, 0),
        hashing.request_key("m", MESSAGES, PARAMS, 1),
    ]
    assert len({base, *variants}) == 5


def test_prompt_id_is_per_dataset_and_content():
    assert hashing.prompt_id("a", MESSAGES) == hashing.prompt_id("a", [dict(MESSAGES[0])])
    assert hashing.prompt_id("a", MESSAGES) != hashing.prompt_id("b", MESSAGES)


def test_unit_interval_is_stable_and_spread():
    values = [hashing.unit_interval("salt", str(i)) for i in range(2000)]
    assert values == [hashing.unit_interval("salt", str(i)) for i in range(2000)]
    assert all(0 <= v < 1 for v in values)
    assert 0.45 < sum(v < 0.5 for v in values) / len(values) < 0.55
