"""The real Gemma 3 270M Q4_K_M on WebGPU vs transformers loading the same GGUF.

The file ships no chat template; wgllm then uses its Gemma fallback (chosen by the
`<start_of_turn>` token in the vocabulary). The reference for the prompt text is Gemma 3's
instruct template as Google publishes it with the -it models (data/gemma3_it_chat_template.jinja),
rendered by transformers."""

from pathlib import Path

import pytest

from tests.model.test_tokenizer import EMOJI_CJK_TEXTS, TEXTS
from wgllm.testing import oracle

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers and explain why they are prime.",
]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "  Sky colour? "}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "Hello! How can I help?\n"}, {"role": "user", "content": "Tell me a joke."}],
]
REFERENCE_TEMPLATE = (Path(__file__).parent / "data" / "gemma3_it_chat_template.jinja").read_text()


@pytest.fixture(scope="module")
def engine(device, gemma3_path):
    from wgllm.runtime.engine import Engine

    return Engine(str(gemma3_path), ctx=512, precision="f32")


def _hf_prompt(path: Path, messages, tokenize: bool):
    out = oracle.reference_tokenizer(path).apply_chat_template(messages, chat_template=REFERENCE_TEMPLATE, tokenize=tokenize,
                                                  add_generation_prompt=True, return_dict=tokenize)
    if not tokenize:
        return out
    ids = out["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_text_matches_gemma3s_own(engine, gemma3_path, messages):
    assert engine.template.is_fallback  # the file has none: this is wgllm's Gemma fallback
    assert engine.template.render(messages) == _hf_prompt(gemma3_path, messages, tokenize=False)


@pytest.mark.parametrize("text", TEXTS + EMOJI_CJK_TEXTS)
def test_tokenization_matches_transformers(engine, gemma3_path, text):
    assert engine.tokenizer.encode(text) == oracle.reference_tokenizer(gemma3_path).encode(text, add_special_tokens=False)


def test_end_of_turn_stops_generation(engine):
    assert engine.tokenizer.token_to_id("<end_of_turn>") in engine.tokenizer.stop_ids


@pytest.mark.parametrize("question", PROMPTS)
def test_greedy_32_tokens_match_transformers(engine, gemma3_path, question):
    messages = [{"role": "user", "content": question}]
    ref_prompt = _hf_prompt(gemma3_path, messages, tokenize=True)
    ids = engine.chat_prompt(messages)
    assert ids == ref_prompt  # chat template + tokenization agree
    ref_out = oracle.reference_greedy(gemma3_path, ids, 32)
    got = list(engine.generate(ids, max_tokens=32, stop_ids=[]))
    assert got == ref_out, f"ours: {engine.tokenizer.decode(got)!r}\nref:  {engine.tokenizer.decode(ref_out)!r}"
