import sqlite3
import subprocess
import sys
import time

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


def test_responses_since_a_moment_are_counted_and_found_past_one_statement(tmp_path):
    with RequestCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([Response(f"old{i}", "x", "stop") for i in range(3)])
        since = time.time()
        cache.put_many([Response(f"new{i}", "x", "stop") for i in range(1200)])
        assert cache.count_since(since) == 1200
        asked = [f"old{i}" for i in range(3)] + [f"new{i}" for i in range(0, 2400, 2)]
        assert cache.keys_since(asked, since) == {f"new{i}" for i in range(0, 1200, 2)}


def test_put_many_is_one_transaction(tmp_path):
    with RequestCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([Response("a", "1", "stop"), Response("b", "2", "stop")])
        bad = Response(("c",), "3", "stop")  # a key sqlite cannot bind: the insert fails after "d"
        with pytest.raises(sqlite3.Error):
            cache.put_many([Response("d", "4", "stop"), bad])
        assert sorted(cache.get_many(["a", "b", "c", "d"])) == ["a", "b"]


def test_claims_are_exclusive_until_released_or_their_process_dies(tmp_path):
    path = tmp_path / "c.sqlite"
    with RequestCache(path) as mine, RequestCache(path) as theirs:
        assert theirs.claim(["a", "b"], "build-1") == {}
        assert mine.claim(["b", "c"], "build-2") == {"b": "build-1"}  # b stays theirs; c is mine now
        assert mine.holders(["a", "b", "c"], "build-2") == {"a": "build-1", "b": "build-1"}
        assert theirs.holders(["c"], "build-1") == {"c": "build-2"}
        theirs.release("build-1")
        assert mine.claim(["a", "b"], "build-2") == {}
        # A build killed with claims held: its process is gone, so its claims are anybody's.
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        mine.db.execute("UPDATE claims SET owner = 'build-3', pid = ? WHERE key = 'c'", [int(dead.stdout)])
        assert theirs.claim(["c"], "build-4") == {}
        assert mine.holders(["c"], "build-2") == {"c": "build-4"}
