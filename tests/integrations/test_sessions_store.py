"""The framework-neutral session store (resil.sessions) against a real Redis pair."""

from __future__ import annotations

import pickle

import pytest
import redis

import resil
from resil import counters, registry
from resil.config import load_config
from resil.sessions import SessionStore, SessionTooLarge, new_id, sign, unsign
from servers.config import resil_toml


@pytest.fixture
def config(write_config, tmp_path, redis_pair):
    text = resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair) + \
        '\n[sessions]\nresource = "cache"\n'
    return load_config(write_config(text), env={})


def test_ids_are_random_and_signed():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 for i in ids)
    sid = new_id()
    cookie = sign(sid, "s3cret")
    assert unsign(cookie, ["s3cret"]) == sid
    assert unsign(cookie, ["other", "s3cret"]) == sid, "fallback secrets are accepted"
    assert unsign(cookie, ["other"]) is None
    assert unsign(cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), ["s3cret"]) is None
    assert unsign(sign(new_id(), "s3cret").replace(".", "x.", 1), ["s3cret"]) is None
    assert unsign("../../etc", ["s3cret"]) is None and unsign(None, ["s3cret"]) is None


def test_save_load_delete_and_ttl(config, redis_pair):
    store = SessionStore(config)
    sid = new_id()
    assert store.load(sid) is None
    assert store.save(sid, None, {"user": 7, "cart": ["a"]}, ttl=60)
    loaded = store.load(sid)
    assert loaded.data == {"user": 7, "cart": ["a"]}
    assert 59 < store.ttl(sid) <= 60
    assert store.save(sid, loaded, {"user": 7, "cart": ["a", "b"]}, ttl=120)
    assert store.load(sid).data["cart"] == ["a", "b"] and store.ttl(sid) > 119
    assert not store.create(sid, {}, 60), "an id that exists is not created again"
    store.delete(sid)
    assert store.load(sid) is None and not store.exists(sid)
    assert not store.save(sid, loaded, {"user": 8}, ttl=60), "a deleted session stays deleted"
    assert store.load(sid) is None


def test_concurrent_saves_of_different_keys_both_survive(config):
    store = SessionStore(config)
    sid = new_id()
    store.save(sid, None, {"user": 1}, ttl=60)
    first, second = store.load(sid), store.load(sid)
    store.save(sid, first, {"user": 1, "cart": ["book"]}, ttl=60)
    store.save(sid, second, {"user": 1, "theme": "dark"}, ttl=60)
    assert store.load(sid).data == {"user": 1, "cart": ["book"], "theme": "dark"}
    third = store.load(sid)
    store.save(sid, third, {"cart": ["book"], "theme": "dark"}, ttl=60)   # removed "user"
    assert store.load(sid).data == {"cart": ["book"], "theme": "dark"}


def test_a_planted_pickle_is_rejected_never_unpickled(config, redis_pair):
    store = SessionStore(config)
    sid = new_id()

    class Boom:
        def __reduce__(self):
            return (exec, ("import os; os.environ['RESIL_PWNED'] = '1'",))
    primary = redis.Redis(port=redis_pair.primary.port)
    primary.hset(store.key(sid), mapping={"d:user": pickle.dumps(Boom()), "m:created": "1"})
    assert store.load(sid) is None
    import os
    assert "RESIL_PWNED" not in os.environ
    assert counters.stats()["session_rejected"] == 1
    primary.set(store.key(sid), pickle.dumps({"user": 1}))     # not even a hash
    assert store.load(sid) is None and counters.stats()["session_rejected"] == 2


def test_oversized_sessions_are_refused_before_writing(config):
    store = SessionStore(config)
    sid = new_id()
    with pytest.raises(SessionTooLarge, match="'blob'"):
        store.save(sid, None, {"user": 1, "blob": "x" * 70000}, ttl=60)
    assert store.load(sid) is None
    with pytest.raises(TypeError):
        store.save(sid, None, {"x": object()}, ttl=60)


def test_reads_come_from_the_own_unit_and_writes_wait_for_it(write_config, tmp_path, redis_pair):
    text = resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair) \
        .replace('unit = "a"', 'unit = "b"', 1) + '\n[sessions]\nresource = "cache"\n'
    resil.start(write_config(text))
    store = SessionStore(registry.runtime().config)
    sid = new_id()
    store.save(sid, None, {"n": 1}, ttl=60)
    replica = redis.Redis(port=redis_pair.replica.port)
    assert replica.exists(store.key(sid)), "the write waited for the replica"
    calls = []
    original = store._local_reads

    def spy():
        client = original()
        calls.append(client)
        return client
    store._local_reads = spy
    assert store.load(sid).data == {"n": 1}
    assert calls and calls[0] is not None, "unit b reads its own replica"
    assert "session_replica_lag" not in counters.stats()


def test_a_save_the_store_never_answered_is_of_unknown_outcome(write_config, tmp_path,
                                                               redis_pair):
    """A save sent to a frozen Redis times out, but the server may still make it when it
    thaws (it does, below): the error says the outcome is unknown. A save to a server
    that refuses the connection was never sent: "not saved"."""
    from resil.sessions import SessionUnavailable
    text = resil_toml((tmp_path / "state.json").as_uri(), redis=redis_pair) + \
        '\n[sessions]\nresource = "cache"\n'
    frozen_cfg = load_config(write_config(text.replace(
        'aliases = ["cache"]\n', 'aliases = ["cache"]\nio_timeout = 0.5\n')), env={})
    store = SessionStore(frozen_cfg)
    sid = new_id()
    assert store.save(sid, None, {"cart": []}, ttl=60)
    loaded = store.load(sid)
    redis_pair.primary.freeze()
    try:
        with pytest.raises(SessionUnavailable) as raised:
            store.save(sid, loaded, {"cart": ["book"]}, ttl=60)
    finally:
        redis_pair.primary.thaw()
    assert raised.value.unknown and "may or may not have been saved" in raised.value.outcome
    assert store.load(sid).data == {"cart": ["book"]}, "made after all, at the thaw"

    dead = text.replace(f"127.0.0.1:{redis_pair.primary.port}", "127.0.0.1:1")
    store = SessionStore(load_config(write_config(dead, name="dead.toml"), env={}))
    with pytest.raises(SessionUnavailable) as raised:
        store.save(new_id(), None, {"cart": ["book"]}, ttl=60)
    assert not raised.value.unknown and raised.value.outcome == "the change was not saved"
