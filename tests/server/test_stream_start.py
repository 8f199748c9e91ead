"""A streamed chat completion sends its role chunk as soon as the request starts: a client sees the
stream open before the prompt is prefilled (which takes seconds for a long prompt on a real model)."""

import json
import threading
import time

import pytest

from tests.server.conftest import API_KEY

HOLD_S = 10.0  # how long the prefill is held back (the old order would send nothing before this)


@pytest.fixture
def slow_prefill(aengine):
    """The engine's prefill blocks (through its on_progress hook, called before each prefill chunk)
    until `release` is set, or HOLD_S passes."""
    engine = aengine.engine
    entered, release = threading.Event(), threading.Event()

    def hold(stage, done, total):
        entered.set()
        release.wait(HOLD_S)

    engine.on_progress = hold
    try:
        yield entered, release
    finally:
        release.set()
        engine.on_progress = None


def test_role_chunk_arrives_before_prefill_completes(server, slow_prefill):
    import httpx

    entered, release = slow_prefill
    body = {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 3, "stream": True, "n": 2}
    events = []
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            t0 = time.monotonic()
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if not events:  # the first event: the prefill of choice 0 is not done (it may not have begun)
                    assert not release.is_set(), "the first chunk came after the prefill"
                    assert entered.wait(HOLD_S / 2), "the prefill did not start"
                    assert time.monotonic() - t0 < HOLD_S / 2
                    release.set()
                events.append(line[6:])
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    first = chunks[0]["choices"][0]
    assert first["index"] == 0 and first["delta"] == {"role": "assistant", "content": ""}
    for index in (0, 1):  # each choice: its role chunk before any of its content
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]
        assert mine[0]["delta"].get("role") == "assistant"
        assert all("role" not in m["delta"] for m in mine[1:])
        assert mine[-1]["finish_reason"] in ("length", "stop")
    assert events[-1] == "[DONE]"
