"""`wgllm serve --parallel N` (issue 16): 16 concurrent streaming clients through the official
`openai` client, with different prompts, lengths, settings, stop strings, logprobs and a JSON
schema, each get exactly the
text of their solo run (the session server, one request at a time); a device loss or a killed
worker process in the middle of the batch changes nothing; a late request's first token comes while the others stream."""

import threading
import time

import pytest

from tests.conftest import in_threads

from tests.server.test_openai_client import SCHEMA

REQUESTS = [
    dict(messages=[{"role": "user", "content": f"Story {i}: " + "the sea " * (i % 5)}],
         max_tokens=8 + 3 * (i % 4),
         **({"temperature": 0.9, "seed": 40 + i} if i % 3 == 1 else {"temperature": 0}),
         **({"stop": ["e"]} if i % 4 == 3 else {}),
         **({"logprobs": True, "top_logprobs": 2} if i % 5 == 4 else {}))
    for i in range(16)
]
REQUESTS[6].update(max_tokens=60, temperature=1.0, seed=9, logprobs=True, top_logprobs=1,  # a grammar
                   response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}})


def _stream(c, req) -> tuple[str, str, int, list]:
    text, finish, usage, lps = "", None, None, []
    for chunk in c.chat.completions.create(model="tiny", stream=True, stream_options={"include_usage": True}, **req):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
            if ch.logprobs and ch.logprobs.content:
                lps += [(t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs]) for t in ch.logprobs.content]
        usage = chunk.usage or usage
    return text, finish, usage.completion_tokens, lps


@pytest.fixture(scope="module")
def solo(client):
    return [_stream(client, r) for r in REQUESTS]


def _all_at_once(c, reqs):
    return in_threads(lambda i: _stream(c, reqs[i]), len(reqs))


@pytest.mark.parametrize("faults", [None, "lost@decode:6", "kill@decode:6"])
def test_16_streaming_clients_get_their_solo_output(server_model, solo, faults):
    import openai

    import wgllm
    from wgllm.runtime.recovery import RecoveryPolicy
    from wgllm.server import start_in_thread

    assert len({s[0] for s in solo}) > 8  # the requests differ: the comparison can fail
    assert sum(1 for s in solo if s[3]) >= 3 and solo[6][0].startswith("{")  # logprobs came; the grammar held
    engine = wgllm.AsyncEngine(str(server_model), ctx=256, parallel=8, faults=faults,
                               recovery=RecoveryPolicy(backoff_s=0.0))
    srv = start_in_thread(engine)
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
        assert _all_at_once(c, REQUESTS) == solo  # 16 clients, 8 slots
        if faults:
            assert engine.engine.events.recoveries == 1
            assert engine.engine.restarts == int(faults.startswith("kill"))  # the batch ran in the worker
    finally:
        srv.stop()
        engine.close()


def test_a_late_request_starts_while_others_stream(server_model):
    import openai

    import wgllm
    from wgllm.server import start_in_thread

    engine = wgllm.AsyncEngine(str(server_model), ctx=512, parallel=4)
    srv = start_in_thread(engine)
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=120)
        no_end = {str(t): -100 for t in engine.engine.tokenizer.stop_ids}  # 400 tokens each
        long = dict(messages=[{"role": "user", "content": "Go on."}], max_tokens=400, temperature=0,
                    logit_bias=no_end)
        done = []
        threads = [threading.Thread(target=lambda: done.append((_stream(c, long), time.perf_counter())))
                   for _ in range(3)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(0.3)  # the long streams run
        late = time.perf_counter()
        stream = c.chat.completions.create(model="tiny", stream=True, max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": "Hi"}])
        first = None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
                break
        stream.close()
        for t in threads:
            t.join(timeout=300)
        ends = [when for _, when in done]
        assert len(ends) == 3 and all(r[0][2] == 400 for r in done), [r[0][1:] for r in done]
        # the late request's first token came long before the streams that were running ended
        assert first is not None and first - late < 0.5 * (min(ends) - t0), (first - late, min(ends) - t0)
    finally:
        srv.stop()
        engine.close()
