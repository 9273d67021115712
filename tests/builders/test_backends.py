"""Backend selection and options, the replay and vLLM backends, and mixed teacher/student policy."""

import importlib.util

import orjson
import pytest

from tests.fakes import QUESTIONS, FakeTeacher
from tracebank import catalog
from tracebank.builders.base import BACKENDS, SamplingParams, check_options, make_teacher
from tracebank.builders.openai_backend import OpenAIOptions
from tracebank.builders.plans import plan_requests
from tracebank.builders.replay_backend import ReplayTeacher
from tracebank.builders.runner import BuildConfig, BuildIncomplete, build
from tracebank.builders.vllm_backend import VLLMOptions, import_vllm, sampling_kwargs
from tracebank.errors import TracebankError


def _traces(location, query="SELECT * FROM traces ORDER BY prompt_id, sample_idx"):
    with catalog.Catalog(location) as cat:
        return cat.sql(query).to_dicts()


def test_every_backend_key_resolves_to_a_factory_and_an_options_class():
    for backend in BACKENDS:
        assert check_options(backend, {"path": "x.jsonl"} if backend == "replay" else None) is not None


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("openai", {"base_url": "localhost:8000"}, "must start with http"),
        ("openai", {"api_key_env": "sk-123 secret"}, "api_key_env must name an environment variable"),
        ("openai", {"concurrency": 0}, "concurrency"),
        ("openai", {"rpm": 0}, "rpm must be positive"),
        ("openai", {"tpm": -5}, "tpm must be positive"),
        ("openai", {"timeout_s": 0}, "timeout_s"),
        ("openai", {"connect_timeout_s": -1}, "connect_timeout_s"),
        ("openai", {"backoff_s": 0}, "backoff_s"),
        ("openai", {"backoff_s": 5, "max_backoff_s": 1}, "max_backoff_s"),
        ("openai", {"max_retries": -1}, "max_retries"),
        ("openai", {"n": 0}, "n must be"),
        ("openai", {"max_tokens_field": "length"}, "max_tokens_field"),
        ("openai", {"api_key": "sk-secret"}, "unknown openai option 'api_key'"),
        ("openai", "fast", "must be a mapping"),
        ("vllm", {"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ("vllm", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ("vllm", {"max_model_len": 8}, "max_model_len"),
        ("vllm", {"chunk_size": 0}, "chunk_size"),
        ("replay", {}, "needs a recordings file"),
        ("transformers", {"batch_size": 0}, "batch_size"),
        ("carrier-pigeon", {}, "unknown backend"),
    ],
)
def test_backend_option_validation(backend, options, message):
    with pytest.raises(TracebankError, match=message):
        check_options(backend, options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_cost_usd": 0}, "max_cost_usd must be positive"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"price_in": -1, "price_out": 1}, "price_in must be 0 or more"),
        ({"price_in": 1}, "give both price_in and price_out"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"backend": "openai", "options": {"concurrency": -3}}, "concurrency"),
        ({"backend": "openai", "options": {"bogus": 1}}, "unknown openai option 'bogus'"),
        ({"strategy": "styles", "styles": "rude"}, "unknown style"),
    ],
)
def test_build_config_validation_of_new_fields(kwargs, message):
    with pytest.raises(TracebankError, match=message):
        BuildConfig("d", **kwargs)


def test_openai_base_url_comes_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    assert OpenAIOptions().endpoint() == "http://127.0.0.1:9/v1/chat/completions"


def test_vllm_backend_explains_how_to_get_vllm_when_it_is_missing():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(TracebankError, match="needs the vllm package.*pip install vllm.*--backend openai"):
        import_vllm()
    with pytest.raises(TracebankError, match="needs the vllm package"):
        make_teacher("vllm", "some-model")


def test_vllm_sampling_params_carry_each_requests_own_sampling_and_seed():
    prompts = [{"prompt_id": "p", "task": "text", "messages": [{"role": "user", "content": "hi"}]}]
    requests = plan_requests(prompts, "m", SamplingParams(0.3, 0.9, 77), samples=2, seed=10)
    assert [sampling_kwargs(r) for r in requests] == [
        {"n": 1, "temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "seed": 10},
        {"n": 1, "temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "seed": 11},
    ]
    assert VLLMOptions().chunk_size >= 1


def test_replay_answers_by_request_key_and_by_prompt_and_leaves_the_rest_unfinished(location, math_dataset, tmp_path):
    questions = list(QUESTIONS)
    recordings = [{"prompt": questions[0], "text": "Recorded 0.\n#### 7", "completion_tokens": 5},
                  {"prompt": questions[0], "sample_idx": 1, "text": "Recorded 1.\n#### 8"},
                  {"prompt": questions[1], "text": "Recorded.\n#### 60"}]  # fmt: skip
    path = tmp_path / "recorded.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recordings))
    cfg = BuildConfig(math_dataset, backend="replay", model="recorded", samples=2, options={"path": str(path)})
    with pytest.raises(BuildIncomplete, match="9 requests did not finish.*no recording") as raised:
        build(location, cfg)
    rows = _traces(location)
    assert raised.value.result.traces_new == 3 and {r["answer"] for r in rows} == {"7", "8", "60"}
    assert {r["backend"] for r in rows} == {"replay"} and {r["cost_usd"] for r in rows} == {0.0}
    exported = tmp_path / "exported.json"
    exported.write_bytes(orjson.dumps(_traces(location, "SELECT request_key, rationale AS text FROM traces")))
    teacher = ReplayTeacher("recorded", str(exported))
    assert len(teacher.by_key) == 3


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "q"}], "row 1 has no text"),
        ([{"text": "t"}], "neither request_key nor prompt"),
        ([], "no rows|no recordings"),
    ],
)
def test_replay_files_are_checked_before_use(tmp_path, rows, message):
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(rows))
    with pytest.raises(TracebankError, match=message):
        ReplayTeacher("m", str(path))


def test_teacher_and_student_traces_of_the_same_requests_coexist(location, math_dataset):
    build(location, BuildConfig(math_dataset, samples=2, model="same-model"), FakeTeacher())
    student = FakeTeacher()
    result = build(location, BuildConfig(math_dataset, samples=2, model="same-model", policy="student"), student)
    assert (result.cached, result.traces_new, student.sent) == (12, 12, [])  # same requests: cached answers
    rows = _traces(location)
    assert len(rows) == len({r["trace_id"] for r in rows}) == 24
    pairs = {}
    for r in rows:
        pairs.setdefault((r["prompt_id"], r["sample_idx"]), set()).add(r["policy"])
    assert all(policies == {"teacher", "student"} for policies in pairs.values())
    for policy in ("teacher", "student"):
        again = build(location, BuildConfig(math_dataset, samples=2, model="same-model", policy=policy), FakeTeacher())
        assert (again.existing, again.traces_new) == (12, 0)


def test_a_recipe_build_step_takes_strategies_caps_and_backend_options(tmp_path):
    from tracebank.cli.recipes import load_recipe

    step = "{backend: openai, model: m, strategy: 'styles,ladder', max_cost_usd: 2, price_in: 1, price_out: 2, options: %s}"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset: d\nsteps:\n  - build: " + step % "{base_url: 'http://127.0.0.1:9/v1', n: 4}" + "\n")
    _, steps = load_recipe(recipe)
    assert steps[0].summary == "build with openai:m"
    recipe.write_text("dataset: d\nsteps:\n  - build: " + step % "{concurency: 4}" + "\n")
    with pytest.raises(TracebankError, match="unknown openai option 'concurency'"):
        load_recipe(recipe)
