"""Bad requests: always a 4xx with an OpenAI error body, never a 5xx, and the server keeps answering.
Auth: a missing or wrong key is a 401."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import API_KEY, MAX_BODY

GOOD = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
GOOD_TEXT = {"model": "tiny", "prompt": "hi", "max_tokens": 2}

# For each field, values that are always wrong (type or range).
WRONG = {
    "messages": st.sampled_from([[], "hi", 5, None, [{"role": "user"}], [{"content": "x"}],
                                 [{"role": "robot", "content": "x"}], [{"role": "user", "content": 3}]]),
    "temperature": st.one_of(st.floats(min_value=2.0001, allow_infinity=False), st.floats(max_value=-1e-9),
                             st.text(), st.booleans()),
    "top_p": st.one_of(st.floats(min_value=1.0001, allow_infinity=False), st.floats(max_value=0), st.lists(st.none())),
    "n": st.one_of(st.integers(max_value=0), st.integers(min_value=17), st.floats(), st.text()),
    "max_tokens": st.one_of(st.integers(max_value=0), st.integers(min_value=10**6), st.text(), st.floats()),
    "seed": st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1), st.text(), st.floats()),
    "stop": st.one_of(st.integers(), st.lists(st.text(min_size=1), min_size=5), st.just([""])),
    "logit_bias": st.one_of(st.dictionaries(st.text(alphabet="abc", min_size=1), st.integers(), min_size=1),
                            st.dictionaries(st.integers(0, 99).map(str), st.floats(min_value=100.1), min_size=1),
                            st.just({str(10**9): 1})),
    "logprobs": st.one_of(st.text(), st.integers(2, 10)),
    "top_logprobs": st.integers(0, 20),  # without logprobs
    "frequency_penalty": st.one_of(st.floats(min_value=2.01, allow_infinity=False), st.text()),
    "response_format": st.one_of(st.just({"type": "xml"}), st.just({"type": "json_schema"}), st.text(),
                                 st.just({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}})),
    "stream": st.one_of(st.text(), st.integers()),
    "model": st.one_of(st.integers(), st.lists(st.text())),  # any name is served (see test_model_names)
    "tools": st.one_of(st.just([]), st.lists(st.just({"type": "function"}), min_size=1),
                      st.just([{"type": "function", "function": {"name": "a b"}}])),
    "n_predict": st.one_of(st.integers(max_value=-2), st.just(0), st.text(), st.floats()),
    "cache_prompt": st.one_of(st.text(), st.integers()),
}


def _post(http, path, content, headers=None):
    r = http.post(path, content=content, headers=headers or {})
    assert 400 <= r.status_code < 500, (r.status_code, r.text, content[:300])
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    assert set(err) == {"message", "type", "param", "code"}
    return r


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(WRONG)), data=st.data())
def test_wrong_field_values_are_4xx(http, field, data):
    body = dict(GOOD, **{field: data.draw(WRONG[field])})
    _post(http, "/v1/chat/completions", json.dumps(body).encode())


EMBED_WRONG = st.one_of(
    st.fixed_dictionaries({"input": st.one_of(st.integers(), st.just([]), st.just([[1], [10**9]]), st.just(""),
                                              st.floats(), st.dictionaries(st.text(), st.text()))}),
    st.fixed_dictionaries({"input": st.just("x"), "dimensions": st.one_of(st.integers(max_value=0), st.text(),
                                                                           st.integers(min_value=10**5))}),
    st.fixed_dictionaries({"input": st.just("x"), "encoding_format": st.text().filter(
        lambda t: t not in ("float", "base64"))}),
    st.fixed_dictionaries({"input": st.just([5] * 400), "truncate": st.just(False)}))  # past the context


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=EMBED_WRONG)
def test_wrong_embedding_requests_are_4xx(http, body):
    _post(http, "/v1/embeddings", json.dumps(body).encode())
    if "encoding_format" not in body:  # not an Ollama field
        r = http.post("/api/embed", content=json.dumps(body).encode())
        assert 400 <= r.status_code < 500 and r.json()["error"], r.text


def test_unknown_fields_are_ignored(http):
    """Fields of other servers' clients (llama.cpp, Ollama) are ignored: the answer is the same."""
    plain = http.post("/v1/chat/completions", json={**GOOD, "seed": 1}).json()
    extra = http.post("/v1/chat/completions", json={**GOOD, "seed": 1, "no_such_field": 0, "mirostat": 2,
                                                    "cache_prompt": True, "id_slot": -1}).json()
    assert extra["choices"][0]["message"] == plain["choices"][0]["message"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["model", "messages", "max_tokens"]), path=st.sampled_from(["chat", "text"]))
def test_missing_required_or_wrong_endpoint_fields_are_4xx(http, field, path):
    if path == "chat":
        body = {k: v for k, v in GOOD.items() if k != field}
        if field != "messages":
            body["prompt"] = "x"  # a field of the other endpoint
        _post(http, "/v1/chat/completions", json.dumps(body).encode())
    else:
        body = dict(GOOD_TEXT, messages=GOOD["messages"]) if field == "messages" else {"model": "tiny"}
        _post(http, "/v1/completions", json.dumps(body).encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), cut=st.integers(1, 60))
def test_garbage_bytes_and_truncated_json_are_4xx(http, raw, cut):
    good = json.dumps(GOOD).encode()
    _post(http, "/v1/chat/completions", good[:cut] if cut < len(good) else good[:-1])
    try:
        body = json.loads(raw.decode("utf-8"))
    except ValueError:
        body = None
    if not isinstance(body, dict):  # anything that is not a JSON object is refused
        _post(http, "/v1/chat/completions", raw)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
def test_invalid_utf8_is_400(http, bad):
    body = json.dumps(GOOD).encode().replace(b"hi", b"h" + bad)
    r = _post(http, "/v1/chat/completions", body)
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]


def test_nan_huge_and_deep_json_are_400(http):
    _post(http, "/v1/chat/completions", json.dumps(GOOD).replace('"max_tokens": 2', '"temperature": NaN').encode())
    _post(http, "/v1/chat/completions", json.dumps(GOOD).replace("2}", "9" * 5000 + "}").encode())
    _post(http, "/v1/chat/completions", b"[" * 100000 + b"]" * 100000)


def test_oversized_body_is_413(http):
    big = json.dumps(dict(GOOD, messages=[{"role": "user", "content": "x" * MAX_BODY}])).encode()
    r = _post(http, "/v1/chat/completions", big)
    assert r.status_code == 413 and str(MAX_BODY) in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the cap applies while reading
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    assert _post(http, "/v1/chat/completions", chunks()).status_code == 413


def test_prompt_past_the_context_is_400_with_numbers(http, aengine):
    n_ctx = aengine.engine.n_ctx
    r = _post(http, "/v1/chat/completions", json.dumps(dict(GOOD, max_tokens=n_ctx)).encode())
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded" and str(n_ctx) in err["message"] and err["param"] == "max_tokens"


def test_unknown_route_and_method(http):
    assert http.get("/v1/nothing").status_code == 404
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY},
                                     {"Authorization": f"Basic {API_KEY}"}])
def test_missing_or_wrong_key_is_401(server, headers):
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/metrics")]:
        r = httpx.request(method, server.url + path, json=GOOD, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/health").status_code == 200  # health needs no key


def test_still_answering_after_all_that(http):
    r = http.post("/v1/chat/completions", json=GOOD)  # sampled: the random model may end at once (EOS)
    assert r.status_code == 200 and 0 <= r.json()["usage"]["completion_tokens"] <= 2
    assert r.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_model_names(aengine):
    """--alias names are served and listed; a strict server answers 404 to other names, a lenient one
    (the default) serves them with the loaded model and names it in the response."""
    import httpx

    from wgllm.server import start_in_thread

    body = {"messages": GOOD["messages"], "max_tokens": 2}
    engine = aengine.engine
    saved = (set(engine.aliases), engine.strict_model_names)
    try:
        running = start_in_thread(aengine, aliases=("my-llm",), strict_model_names=True)
        try:
            with httpx.Client(base_url=running.url, timeout=60) as c:
                assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["tiny", "my-llm"]
                assert c.post("/v1/chat/completions", json={**body, "model": "my-llm"}).json()["model"] == "tiny"
                r = c.post("/v1/chat/completions", json={**body, "model": "gpt-3.5-turbo"})
                assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        finally:
            running.stop()
    finally:
        engine.aliases, engine.strict_model_names = saved


def test_tokenize_and_detokenize(http, aengine):
    """llama.cpp's /tokenize and /detokenize, against the engine's own tokenizer."""
    tok = aengine.engine.tokenizer
    text = "Hello world <|im_end|> done"
    r = http.post("/tokenize", json={"content": text}).json()
    assert r["tokens"] == tok.encode(text, add_special=False, parse_special=True)
    assert tok.token_to_id("<|im_end|>") in r["tokens"]
    plain = http.post("/tokenize", json={"content": text, "parse_special": False}).json()["tokens"]
    assert tok.token_to_id("<|im_end|>") not in plain
    pieces = http.post("/tokenize", json={"content": "ab cd", "with_pieces": True}).json()["tokens"]
    assert "".join(p["piece"] for p in pieces) == "ab cd" and all(isinstance(p["id"], int) for p in pieces)
    assert http.post("/detokenize", json={"tokens": r["tokens"]}).json()["content"] == tok.decode(r["tokens"])
    for path, body, param in (("/tokenize", {"content": 5}, "content"), ("/tokenize", {}, "content"),
                              ("/detokenize", {"tokens": [tok.vocab_size]}, "tokens"),
                              ("/detokenize", {"tokens": "1 2"}, "tokens")):
        err = _post(http, path, json.dumps(body).encode()).json()["error"]
        assert err["param"] == param, (path, body, err)
