"""Signals: encode/decode, HMAC verification, stale epochs, topology checks."""

from __future__ import annotations

import json

import pytest

from resil.config import load_config
from resil.errors import SignalError
from resil.state import ControlState, Intent, Lock, decode_signal, encode_signal, make_signal, newer

CONFIG = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""
KEY = b"k3y"


@pytest.fixture
def topology(write_config):
    return load_config(write_config(CONFIG), env={}).topology


def test_initial_state_comes_from_configuration(topology):
    state = ControlState.initial(topology)
    assert state.epoch == 0
    assert dict(state.primaries) == {"db": "a"}
    assert dict(state.weights) == {"a": 1.0, "b": 1.0}
    assert not state.locks


def test_round_trip_signed(topology):
    state = ControlState.initial(topology).evolve(
        primaries={"db": "b"}, locks={"db": Lock("op", 12.5, "switch")})
    signal = make_signal(state, issuer="op@h:1", issued_at=100.0, key=KEY)
    back = decode_signal(encode_signal(signal), topology, KEY)
    assert back.epoch == 1 and back.state.primaries["db"] == "b"
    assert back.state.locks["db"] == Lock("op", 12.5, "switch")
    assert back.issuer == "op@h:1" and back.signature == signal.signature


def test_unsigned_signal_rejected_when_key_configured(topology):
    data = encode_signal(make_signal(ControlState.initial(topology).evolve(), issuer="x",
                                     issued_at=1.0, key=None))
    with pytest.raises(SignalError, match="unsigned"):
        decode_signal(data, topology, KEY)
    assert decode_signal(data, topology, None).epoch == 1   # no key configured: accepted


def test_forged_signal_rejected(topology):
    signal = make_signal(ControlState.initial(topology).evolve(), issuer="x", issued_at=1.0,
                         key=KEY)
    body = json.loads(encode_signal(signal))
    body["state"]["primaries"]["db"] = "b"          # tampered after signing
    with pytest.raises(SignalError, match="forged"):
        decode_signal(json.dumps(body).encode(), topology, KEY)
    other = make_signal(signal.state, issuer="x", issued_at=1.0, key=b"wrong")
    with pytest.raises(SignalError, match="forged"):
        decode_signal(encode_signal(other), topology, KEY)


@pytest.mark.parametrize("mutate,words", [
    (lambda b: b.update(epoch=-1), "epoch"),
    (lambda b: b.update(epoch="7"), "epoch"),
    (lambda b: b.update(version=99), "unsupported version"),
    (lambda b: b["state"]["primaries"].update(db="c"), "not a unit with an endpoint"),
    (lambda b: b["state"]["weights"].update(a=-1), "weight"),
    (lambda b: b["state"].update(locks={"db": {"since": 1}}), "lock"),
    (lambda b: b.update(state=[]), "'state' is not an object"),
    (lambda b: b["state"].update(intents={"db": {"holder": "h", "target": "b"}}),
     "intent on 'db' is malformed"),
    (lambda b: b["state"].update(intents={"db": {"holder": "h", "target": "c", "until": 9}}),
     "intent on 'db' names unit 'c', where it has no endpoint"),
    (lambda b: b["state"].update(intents=[]), "'state.intents' is not an object"),
])
def test_malformed_signals_rejected(topology, mutate, words):
    body = json.loads(encode_signal(make_signal(ControlState.initial(topology).evolve(),
                                                issuer="x", issued_at=1.0, key=None)))
    mutate(body)
    with pytest.raises(SignalError, match=words):
        decode_signal(json.dumps(body).encode(), topology, None)
    with pytest.raises(SignalError, match="not JSON"):
        decode_signal(b"{half", topology, None)


def test_a_switch_intent_round_trips_and_is_absent_from_signals_without_one(topology):
    """The intent of a planned switch (spares open ahead of its lock) travels signed; a
    state without one encodes exactly as before intents existed, for older agents."""
    plain = ControlState.initial(topology).evolve()
    assert "intents" not in json.loads(encode_signal(
        make_signal(plain, issuer="x", issued_at=1.0, key=KEY)))["state"]
    state = plain.evolve(intents={"db": Intent("op/1", "b", 150.0)})
    back = decode_signal(encode_signal(make_signal(state, issuer="x", issued_at=1.0, key=KEY)),
                         topology, KEY)
    assert dict(back.state.intents) == {"db": Intent("op/1", "b", 150.0)}
    assert back.state.intents["db"].live(149.9) and not back.state.intents["db"].live(150.0)
    assert back.state.evolve(locks={}).intents == back.state.intents    # others keep it


def test_unknown_resources_are_ignored(topology):
    body = json.loads(encode_signal(make_signal(ControlState.initial(topology).evolve(),
                                                issuer="x", issued_at=1.0, key=None)))
    body["state"]["primaries"]["newer-db"] = "z"     # from an agent with a newer config
    decoded = decode_signal(json.dumps(body).encode(), topology, None)
    assert "newer-db" not in decoded.state.primaries


def test_only_higher_epochs_are_newer(topology):
    base = ControlState.initial(topology).evolve(epoch=5)
    def signal(epoch):
        return make_signal(base.evolve(epoch=epoch), issuer="x", issued_at=1, key=None)
    assert newer(base, signal(6))
    assert not newer(base, signal(5))
    assert not newer(base, signal(4))
