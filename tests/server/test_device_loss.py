"""A device loss injected in the middle of a streamed request (the recovery issue's fault switch):
the client's stream completes with exactly the fault-free tokens, none repeated or missing, and the
recovery shows in the request's usage and in /metrics."""

import httpx
import pytest

MSG = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.mark.parametrize("fault", ["lost@decode:5", "hang@decode:3"])
def test_stream_survives_a_device_loss(server_model, client, fault):
    import openai

    import wgllm
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.server import start_in_thread

    ref = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=16, temperature=0)
    want = ref.choices[0]
    faulty = wgllm.AsyncEngine(str(server_model), ctx=256, faults=fault,
                               recovery=RecoveryPolicy(hang_timeout_s=2.0, backoff_s=0.0))
    srv = start_in_thread(faulty)
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
        text, finish, usage = "", None, None
        for chunk in c.chat.completions.create(model="tiny", messages=MSG, max_tokens=16, temperature=0,
                                               stream=True, stream_options={"include_usage": True}):
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
            usage = chunk.usage or usage
        assert (text, finish) == (want.message.content, want.finish_reason)
        assert usage.completion_tokens == ref.usage.completion_tokens
        assert usage.model_extra["extra"]["recoveries"] == 1
        metrics = httpx.get(srv.url + "/metrics").text
        assert "wgllm_recoveries_total 1.0" in metrics and "wgllm_device_losses_total 1.0" in metrics
    finally:
        srv.stop()
        faulty.close()


def test_split_model_stream_survives_a_loss_on_its_second_part(server_model, client, monkeypatch):
    """A model split over two devices (lavapipe twice): a loss on part 1 mid-stream; the output,
    usage.extra.adapters and /metrics per adapter."""
    import openai

    import wgllm
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.server import start_in_thread

    monkeypatch.setenv("WGLLM_ADAPTERS", "0,0")
    ref = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=16, temperature=0)
    split = wgllm.AsyncEngine(str(server_model), ctx=256, split="0:0-0,1:1-1", faults="lost@decode:4#1",
                              recovery=RecoveryPolicy(backoff_s=0.0))
    srv = start_in_thread(split)
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
        text, usage = "", None
        for chunk in c.chat.completions.create(model="tiny", messages=MSG, max_tokens=16, temperature=0,
                                               stream=True, stream_options={"include_usage": True}):
            text += "".join(ch.delta.content or "" for ch in chunk.choices)
            usage = chunk.usage or usage
        assert text == ref.choices[0].message.content
        extra = usage.model_extra["extra"]
        assert extra["recoveries"] == 1 and [a["layers"] for a in extra["adapters"]] == [[0, 1], [1, 2]]
        assert all(a["memory_allocated_bytes"] == a["memory_planned_bytes"] > 0 and a["busy_s"] > 0
                   for a in extra["adapters"])
        metrics = httpx.get(srv.url + "/metrics").text
        used = [line for line in metrics.splitlines() if line.startswith("wgllm_memory_used_bytes{")]
        busy = [line for line in metrics.splitlines() if line.startswith("wgllm_adapter_busy_seconds_total{")]
        assert len(used) == 2 and len(busy) == 2 and '#2"' in used[1]
    finally:
        srv.stop()
        split.close()


@pytest.fixture(scope="module")
def crash_server(server_model):
    """A server whose engine runs in a supervised worker, with its own metrics (restarts from 0)."""
    import openai

    import wgllm
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.server import start_in_thread

    aengine = wgllm.AsyncEngine(str(server_model), ctx=256, recovery=RecoveryPolicy(backoff_s=0.0))
    srv = start_in_thread(aengine)
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
    yield aengine, srv, client
    srv.stop()
    aengine.close()


def _stream(client, **kw):
    """The content of every chunk, in order, and the usage."""
    pieces, usage = [], None
    for chunk in client.chat.completions.create(model="tiny", messages=MSG, stream=True,
                                                stream_options={"include_usage": True}, **kw):
        pieces += [(ch.delta.content or "", ch.finish_reason,
                    [(t.token, t.logprob) for t in (ch.logprobs.content or [])] if ch.logprobs else None)
                   for ch in chunk.choices]
        usage = chunk.usage or usage
    return pieces, usage


@pytest.mark.parametrize("fault", ["kill@load", "segv@load", "kill@prefill", "segv@prefill", "kill@decode:3",
                                   "segv@decode:9"])
def test_stream_survives_a_worker_crash(crash_server, fault):
    """SIGKILL / SIGSEGV to the worker at load, prefill or decode during a streamed request: the stream
    is chunk for chunk the fault-free one, /health stays up, /metrics counts the restart."""
    from wgllm.runtime import faults

    aengine, srv, client = crash_server
    kw = dict(max_tokens=16, temperature=0.8, seed=3, logprobs=True)
    runtime = aengine.engine.runtime
    runtime.reset()
    want, _ = _stream(client, **kw)
    restarts = runtime.restarts
    runtime.reset()
    runtime.faults.faults = faults.parse(fault)
    if "load" in fault:
        runtime.release()  # the request starts the worker: the fault comes while it loads
    old = runtime.pid
    got, usage = _stream(client, **kw)
    assert got == want and not runtime.faults  # every chunk the same; the fault fired
    assert runtime.restarts == restarts + 1 and (old is None or runtime.pid != old)
    assert usage.model_extra["extra"]["recoveries"] == 1
    assert httpx.get(srv.url + "/health").json()["status"] == "ok"
    metrics = httpx.get(srv.url + "/metrics").text
    assert f"wgllm_worker_restarts_total {float(runtime.restarts)}" in metrics


def test_a_crash_looping_worker_is_a_503_and_the_server_keeps_serving(server_model):
    """Worker deaths past the retries (and no adapter to fall back to): the request gets a 503 with
    WorkerCrashedError; /health stays up and the next request is answered by a fresh worker."""
    import wgllm
    from wgllm.runtime import faults
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.server import start_in_thread

    aengine = wgllm.AsyncEngine(str(server_model), ctx=256, recovery=RecoveryPolicy(backoff_s=0.0, retries=1,
                                                                                      fallback=False))
    srv = start_in_thread(aengine)
    try:
        body = {"model": "tiny", "messages": MSG, "max_tokens": 8, "temperature": 0}
        want = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=120).json()
        aengine.engine.runtime.reset()
        aengine.engine.runtime.faults.faults = faults.parse("kill@decode:2x3")
        bad = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=120)
        assert bad.status_code == 503 and bad.json()["error"]["code"] == "WorkerCrashedError"
        assert "killed by SIGKILL" in bad.json()["error"]["message"]
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"
        aengine.engine.runtime.faults.faults = []
        again = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=120).json()
        assert again["choices"][0]["message"] == want["choices"][0]["message"]
    finally:
        srv.stop()
        aengine.close()
