"""wgllm.Engine's OpenAI API on a tiny random model: shapes, streaming, n, seeds, stops, logprobs,
logit_bias, structured output, errors, interrupt, load/unload."""

import json
import threading

import jsonschema
import pytest

import wgllm
from wgllm.api.types import ChatCompletion, ChatCompletionChunk, Completion
from wgllm.errors import (
    ContextLengthExceededError,
    EngineBusyError,
    InvalidParameterError,
    ModelNotFoundError,
    ModelNotLoadedError,
)

MSG = [{"role": "user", "content": "Tell me a story."}]


def chat(engine, **kw):
    return engine.chat.completions.create(messages=kw.pop("messages", MSG), **kw)


def text_of(engine, **kw):
    return chat(engine, **kw).choices[0].message.content


def streamed(chunks):
    """{index: text} and {index: finish_reason} of a chat stream."""
    texts, finish = {}, {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    return texts, finish


def test_chat_completion_shape_and_usage(tiny):
    r = chat(tiny, max_tokens=8, temperature=0)
    assert isinstance(r, ChatCompletion) and r.object == "chat.completion" and r.model == tiny.model_id
    (c,) = r.choices
    assert c.finish_reason == "length" and c.message.role == "assistant" and c.message.content
    u = r.usage
    assert u.completion_tokens == 8 and u.prompt_tokens == len(tiny.chat_prompt(MSG))
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.extra.decode_tokens_per_s > 0 and u.extra.time_to_first_token_s > 0
    assert u.extra.adapter == tiny.adapter.summary and u.extra.recoveries == 0


def test_stream_equals_whole_response(tiny):
    whole = chat(tiny, max_tokens=12, temperature=0)
    chunks = list(chat(tiny, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts, finish = streamed(chunks)
    assert texts == {0: whole.choices[0].message.content} and finish == {0: "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


def test_seed_reproducible_and_n_choices_differ(tiny):
    kw = {"max_tokens": 10, "temperature": 1.0, "seed": 1234, "n": 3}
    a, b = chat(tiny, **kw), chat(tiny, **kw)
    texts = [c.message.content for c in a.choices]
    assert texts == [c.message.content for c in b.choices]
    assert len(set(texts)) > 1  # choice j samples with seed + j
    assert [c.index for c in a.choices] == [0, 1, 2] and a.usage.completion_tokens == 30
    assert text_of(tiny, max_tokens=10, temperature=1.0, seed=1235) == texts[1]


def test_stream_with_n(tiny):
    whole = chat(tiny, max_tokens=6, temperature=1.0, seed=9, n=2)
    texts, finish = streamed(chat(tiny, max_tokens=6, temperature=1.0, seed=9, n=2, stream=True))
    assert texts == {c.index: c.message.content for c in whole.choices} and finish == {0: "length", 1: "length"}


def test_stop_sequence_cuts_the_text(tiny):
    full = text_of(tiny, max_tokens=24, temperature=0)
    stop = full[5:8]
    want = full[: full.index(stop)]
    r = chat(tiny, max_tokens=24, temperature=0, stop=[stop, "never-there"])
    assert r.choices[0].message.content == want and r.choices[0].finish_reason == "stop"
    texts, finish = streamed(chat(tiny, max_tokens=24, temperature=0, stop=stop, stream=True))
    assert texts == {0: want} and finish == {0: "stop"}


def test_logprobs_follow_the_greedy_choice(tiny):
    r = chat(tiny, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    c = r.choices[0]
    lps = c.logprobs.content
    assert len(lps) == r.usage.completion_tokens == 6
    assert b"".join(bytes(t.bytes) for t in lps).decode("utf-8", "replace") == c.message.content
    for t in lps:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob)  # greedy took the most likely token
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
    assert text_of(tiny, max_tokens=6, temperature=0) == c.message.content  # logprobs change nothing


def test_logit_bias_forces_a_token(tiny):
    tok = tiny.tokenizer.encode("Q")[0]
    r = chat(tiny, max_tokens=5, temperature=0.7, seed=3, logit_bias={str(tok): 100})
    assert r.choices[0].message.content == "Q" * 5


def test_completions_text_prompt_ids_and_logprobs(tiny):
    r = tiny.completions.create(prompt="Once upon", max_tokens=5, temperature=0, logprobs=2)
    assert isinstance(r, Completion) and r.object == "text_completion"
    (c,) = r.choices
    assert len(c.logprobs.tokens) == 5 and all(len(t) <= 2 for t in c.logprobs.top_logprobs)
    ids = tiny.tokenizer.encode("Once upon", add_special=True)
    same = tiny.completions.create(prompt=ids, max_tokens=5, temperature=0)
    assert same.choices[0].text == c.text
    two = tiny.completions.create(prompt=["Once upon", "A B"], max_tokens=5, temperature=0, n=2)
    assert [x.index for x in two.choices] == [0, 1, 2, 3] and two.choices[0].text == c.text
    assert two.usage.prompt_tokens == len(ids) + len(tiny.tokenizer.encode("A B", add_special=True))


def test_completions_default_is_16_tokens(tiny):
    assert tiny.completions.create(prompt="x", temperature=0).usage.completion_tokens == 16


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "age", "ok"],
          "properties": {"name": {"type": "string", "maxLength": 6},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "ok": {"type": "boolean"}}}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_output_parses_and_validates_even_from_random_weights(tiny, seed):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    r = chat(tiny, max_tokens=120, temperature=1.0, seed=seed, response_format=fmt)
    c = r.choices[0]
    assert c.finish_reason == "stop"
    jsonschema.validate(json.loads(c.message.content), SCHEMA)


def test_json_object_output_is_an_object(tiny):
    r = chat(tiny, max_tokens=60, temperature=0, response_format={"type": "json_object"}, logit_bias={"125": -100})
    text = r.choices[0].message.content
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # a random model may write a long object; what it wrote is still a JSON prefix
        assert text.startswith("{")


def test_bad_schema_is_a_request_error(tiny):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
    with pytest.raises(InvalidParameterError) as info:
        chat(tiny, max_tokens=5, response_format=fmt)
    assert info.value.param == "response_format"


def test_context_errors_have_the_numbers(tiny):
    n = len(tiny.chat_prompt(MSG))
    with pytest.raises(ContextLengthExceededError, match=f"{n} tokens.*{tiny.n_ctx - n}"):
        chat(tiny, max_tokens=tiny.n_ctx)
    with pytest.raises(ContextLengthExceededError, match=str(tiny.n_ctx)):
        chat(tiny, messages=[{"role": "user", "content": "word " * 400}], max_tokens=1)
    # without max_tokens, generation may fill the rest of the context
    r = chat(tiny, messages=[{"role": "user", "content": "a " * 100}], temperature=0, logit_bias={"2": -100})
    assert r.usage.total_tokens == tiny.n_ctx and r.choices[0].finish_reason == "length"


def test_request_errors_raise_before_streaming(tiny):
    with pytest.raises(InvalidParameterError):
        chat(tiny, stream=True, logit_bias={str(tiny.cfg.n_vocab): 1})
    with pytest.raises(ModelNotFoundError, match=tiny.model_id):
        chat(tiny, model="gpt-4o", stream=True)
    with pytest.raises(InvalidParameterError):
        tiny.completions.create(prompt=[tiny.cfg.n_vocab + 5])
    assert chat(tiny, model=tiny.model_id, max_tokens=1).choices


def test_one_generation_at_a_time(tiny):
    stream = chat(tiny, max_tokens=30, temperature=0, stream=True)
    next(stream)
    with pytest.raises(EngineBusyError):
        chat(tiny, max_tokens=2)
    stream.close()  # closing the stream ends its generation
    assert chat(tiny, max_tokens=2).usage.completion_tokens == 2


def test_interrupt_from_another_thread(tiny):
    stream = chat(tiny, max_tokens=200, temperature=0, stream=True)
    next(stream)
    threading.Timer(0.05, tiny.interrupt).start()
    _, finish = streamed(stream)
    assert finish == {0: "abort"}
    assert tiny.stats.completion_tokens < 200
    assert chat(tiny, max_tokens=3, temperature=0).choices[0].finish_reason == "length"  # the next one runs


def test_reset_keeps_outputs(tiny):
    a = text_of(tiny, max_tokens=8, temperature=0)
    tiny.reset()
    r = chat(tiny, max_tokens=8, temperature=0)
    assert r.usage.prompt_tokens_details.cached_tokens == 0 and r.choices[0].message.content == a


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unload_and_load_another_model(tiny_path, tmp_path, device):
    from wgllm.testing import synth

    other = synth.write_llama_gguf(tmp_path / "other.gguf", "tiny-mha-tied", seed=2)
    e = wgllm.Engine(str(tiny_path), ctx=128)
    before = text_of(e, max_tokens=4, temperature=0)
    pid = e.runtime.pid
    e.unload()
    assert not e.loaded and not _alive(pid)  # the worker process is gone, and its memory with it
    with pytest.raises(ModelNotLoadedError):
        chat(e, max_tokens=2)
    e.load(str(other))
    assert e.model_id == "other" and e.n_ctx == 128  # options not given are kept
    r = chat(e, model="other", max_tokens=3, temperature=0)  # the new model answers (a random one may stop early)
    assert 1 <= r.usage.completion_tokens <= 3 and r.model == "other"
    e.load(str(tiny_path))
    assert text_of(e, max_tokens=4, temperature=0) == before


@pytest.mark.parametrize("fault", ["lost@decode:4", "lost@decode:9", "kill@decode:4", "segv@decode:9"])
def test_recovery_mid_generation_keeps_grammar_logprobs_and_draws_exact(tiny_path, tiny, fault):
    """A device loss while a grammar-constrained, sampled generation with logprobs runs: the engine
    restores the sampler's state and samples again; the output is the fault-free one."""
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    kw = {"max_tokens": 120, "temperature": 1.0, "seed": 4, "logprobs": True, "response_format": fmt}
    tiny.reset()
    want = chat(tiny, **kw)
    faulty = wgllm.Engine(str(tiny_path), ctx=256, faults=fault)
    got = chat(faulty, **kw)
    assert got.usage.extra.recoveries == 1
    assert got.choices[0].message.content == want.choices[0].message.content
    assert [t.logprob for t in got.choices[0].logprobs.content] == pytest.approx(
        [t.logprob for t in want.choices[0].logprobs.content], rel=1e-4)
    jsonschema.validate(json.loads(got.choices[0].message.content), SCHEMA)


def test_responses_api_in_python(tiny):
    kw = {"max_tokens": 6, "temperature": 0}
    for _ in range(2):  # the second finds the prompt cached, as the responses request will
        want = chat(tiny, **kw).choices[0].message.content
    r = tiny.responses.create(input=MSG[0]["content"], max_output_tokens=6, temperature=0)
    assert r["object"] == "response" and r["output"][0]["content"][0]["text"] == want
    assert r["usage"]["output_tokens"] == 6 and r["status"] == "incomplete"
    events = list(tiny.responses.create(input=MSG[0]["content"], max_output_tokens=6, temperature=0, stream=True))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.incomplete"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == want
