"""The real SmolLM2-135M-Instruct Q4_1 on WebGPU vs transformers loading the same GGUF."""

from pathlib import Path

import pytest

from wgllm.testing import oracle

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers and explain why they are prime.",
]


@pytest.fixture(scope="module")
def engine(device, smollm2_path):
    from wgllm.runtime.engine import Engine

    return Engine(str(smollm2_path), ctx=512, precision="f32")


def _hf_greedy(path: Path, messages, n):
    """transformers' chat-template token ids and its greedy continuation (KV-cached loop)."""
    tok = oracle.reference_tokenizer(path)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    ids = list(ids[0] if ids and isinstance(ids[0], list) else ids)
    return ids, oracle.reference_greedy(path, ids, n)


@pytest.mark.parametrize("question", PROMPTS)
def test_greedy_32_tokens_match_transformers(engine, smollm2_path, question):
    messages = [{"role": "user", "content": question}]
    ref_prompt, ref_out = _hf_greedy(smollm2_path, messages, 32)
    ids = engine.chat_prompt(messages)
    assert ids == ref_prompt  # chat template + tokenization agree
    got = list(engine.generate(ids, max_tokens=32, stop_ids=[]))
    assert got == ref_out, f"ours: {engine.tokenizer.decode(got)!r}\nref:  {engine.tokenizer.decode(ref_out)!r}"


def test_france_answer_says_paris(engine):
    ids = engine.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])
    text = engine.tokenizer.decode(list(engine.generate(ids, max_tokens=20)))
    assert "Paris" in text
