import sqlite3

import pytest

from tracebank.builders.base import Response
from tracebank.builders.cache import RequestCache


def test_responses_survive_reopening(tmp_path):
    path = tmp_path / "cache.sqlite"
    with RequestCache(path) as cache:
        cache.put(Response("k1", "text one", "stop", 3, 4, 0.5))
        cache.put(Response("k2", None, "error", error="context_length"))
    with RequestCache(path) as cache:
        found = cache.get_many(["k1", "k2", "k3"])
    assert set(found) == {"k1", "k2"}
    assert found["k1"] == Response("k1", "text one", "stop", 3, 4, 0.5)
    assert found["k2"].error == "context_length"


def test_get_many_handles_more_keys_than_one_sql_statement(tmp_path):
    with RequestCache(tmp_path / "c.sqlite") as cache:
        for i in range(1200):
            cache.put(Response(f"k{i}", str(i), "stop"))
        assert len(cache.get_many(f"k{i}" for i in range(0, 2400, 2))) == 600


def test_put_many_is_one_transaction(tmp_path):
    with RequestCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([Response("a", "1", "stop"), Response("b", "2", "stop")])
        bad = Response(("c",), "3", "stop")  # a key sqlite cannot bind: the insert fails after "d"
        with pytest.raises(sqlite3.Error):
            cache.put_many([Response("d", "4", "stop"), bad])
        assert sorted(cache.get_many(["a", "b", "c", "d"])) == ["a", "b"]
