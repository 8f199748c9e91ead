"""Serving: 16 concurrent streaming clients get their own right outputs; a client that disconnects
has its generation stopped; /metrics and /health report."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.server.conftest import API_KEY

WORDS = "apple river stone cloud ember frost maple harbor violet copper lantern meadow orbit pebble quartz willow"


def _messages(i):
    return [{"role": "user", "content": f"Client {i} asks about {WORDS.split()[i]}."}]


def test_16_concurrent_streaming_clients(client):
    whole = [client.chat.completions.create(model="tiny", messages=_messages(i), max_tokens=12, temperature=0)
             .choices[0] for i in range(16)]
    want = [(c.message.content, c.finish_reason) for c in whole]
    assert len(set(want)) > 8  # the prompts give different outputs
    start = threading.Barrier(16)

    def stream(i):
        start.wait()
        text, finish = "", None
        for c in client.chat.completions.create(model="tiny", messages=_messages(i), max_tokens=12, temperature=0,
                                                stream=True):
            for ch in c.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
        return text, finish

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(stream, range(16)))
    assert got == want


def _wait_idle(aengine, timeout=30.0):
    deadline = time.monotonic() + timeout
    while aengine.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert aengine.pending == 0


def _metric(http, name):
    for line in http.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_client_disconnect_cancels_its_generation(server, http, aengine):
    _wait_idle(aengine)
    cancelled = _metric(http, "wgllm_requests_cancelled_total")
    body = {"model": "tiny", "messages": _messages(3), "max_tokens": 200, "temperature": 0.9, "seed": 1,
            "logprobs": True, "stream": True}
    with httpx.Client(timeout=30) as c, c.stream("POST", server.url + "/v1/chat/completions", json=body,
                  headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        # leaving the block closes the connection mid-stream
    _wait_idle(aengine)
    assert aengine.engine.stats.completion_tokens < 200
    assert _metric(http, "wgllm_requests_cancelled_total") == cancelled + 1
    r = http.post("/v1/chat/completions", json=dict(body, stream=False, max_tokens=3))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def test_non_streaming_disconnect_also_cancels(server, http, aengine):
    _wait_idle(aengine)
    body = {"model": "tiny", "messages": _messages(4), "max_tokens": 200, "temperature": 0.9, "seed": 2,
            "logprobs": True}
    try:
        httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                   timeout=0.3)
    except httpx.TimeoutException:
        pass
    _wait_idle(aengine)
    assert aengine.engine.stats.completion_tokens < 200


def test_metrics_and_health(http, aengine):
    http.post("/v1/chat/completions", json={"model": "tiny", "messages": _messages(0), "max_tokens": 2})
    text = http.get("/metrics").text
    adapter = aengine.engine.adapter.summary
    assert 'wgllm_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    assert _metric(http, "wgllm_completion_tokens_total") >= 2
    assert _metric(http, "wgllm_time_to_first_token_seconds_count") >= 1
    assert f'wgllm_memory_planned_bytes{{adapter="{adapter}"}}' in text
    used = sum(p["allocated"] for p in aengine.engine.by_adapter())  # the worker's last report
    assert used > 0 and _metric(http, "wgllm_memory_used_bytes") == used
    assert _metric(http, "wgllm_worker_restarts_total") == aengine.engine.restarts
    assert _metric(http, "wgllm_recoveries_total") == 0 and _metric(http, "wgllm_device_losses_total") == 0
    assert _metric(http, "wgllm_decode_tokens_per_second") > 0
    h = http.get("/health").json()
    assert h == {"status": "ok", "model": aengine.engine.model_id}


def test_two_apps_have_separate_registries(aengine):
    from wgllm.server import create_app

    a, b = create_app(aengine), create_app(aengine)
    assert a.state.metrics.registry is not b.state.metrics.registry


def test_sse_format_is_openais(server, http):
    body = {"model": "tiny", "messages": _messages(5), "max_tokens": 3, "stream": True}
    r = http.post("/v1/chat/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"] == {"role": "assistant",
                                                                                          "content": ""}
    assert "usage" not in first  # only with stream_options.include_usage
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("length", "stop")
    # the random model may end with EOS before max_tokens: each response's own token count decides
    # (two requests need not agree: f16 rounding differs with how much of the prompt is cached)
    r = http.post("/v1/chat/completions", json={**body, "stream_options": {"include_usage": True}})
    chunks = [json.loads(e[6:]) for e in r.text.split("\n\n") if e and e != "data: [DONE]"]
    usage = chunks[-1]["usage"]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["length" if usage["completion_tokens"] == 3 else "stop"]
    whole = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert whole["choices"][0]["finish_reason"] == ("length" if whole["usage"]["completion_tokens"] == 3 else "stop")
