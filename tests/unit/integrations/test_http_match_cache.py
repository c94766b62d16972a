"""The cache of which resource an outgoing HTTP call's scheme and authority name is read
and written by every request thread at once. A cache that is not safe for that (as
``cachetools.LRUCache`` documents itself) corrupts under eviction, and in resil such a
fault goes through fail-open: the call would go out unrouted. Many threads, many
distinct authorities (so the cache evicts all the time), and every call to the resource
must get a plan, with no fault."""

from __future__ import annotations

import sys
import threading

import resil
from resil.integrations._http import plan

CONFIG = """
unit = "a"
[control]
url = "{url}"
[admin]
listen = "off"
[resources.products]
kind = "http"
endpoints = {{ a = ["http://10.0.0.3:8000"], b = ["http://10.0.0.4:8000"] }}
aliases = ["products"]
"""


# How the call's outcome would be read: unused, as nothing is sent here.
READING = (lambda exc: False, lambda response: 200, lambda response: None)


def test_many_threads_and_evictions_never_leave_a_call_unrouted(write_config, tmp_path):
    resil.start(write_config(CONFIG.format(url=(tmp_path / "state.json").as_uri())))
    unrouted, faults = [], []
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)         # switch threads as often as possible

    def caller(n: int) -> None:
        try:
            for i in range(1500):
                # A new authority each time: the cache keeps evicting.
                assert plan(f"http://other-{n}-{i}.example/x", "GET", {}, True, READING) is None
                found = plan("http://products/items", "GET", {}, True, READING)
                if found is None or found.resource.name != "products":
                    unrouted.append(i)
        except Exception as exc:    # what fail-open would have swallowed
            faults.append(repr(exc))
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(before)
        resil.stop()
    assert faults == [] and unrouted == []
