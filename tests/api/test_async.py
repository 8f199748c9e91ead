"""AsyncEngine: the same API under asyncio; concurrent requests queue (FIFO) without mixing outputs;
leaving a stream stops its generation."""

import asyncio

import pytest

import wgllm


@pytest.fixture(scope="module")
def aengine(tiny):
    e = wgllm.AsyncEngine(engine=tiny)
    yield e
    e.close()


def _prompt(i):
    return [{"role": "user", "content": f"Request number {i} about {'abcdefgh'[i % 8] * (i % 5 + 1)}"}]


def test_concurrent_requests_match_sequential(aengine, tiny):
    want = [tiny.chat.completions.create(messages=_prompt(i), max_tokens=8, temperature=0).choices[0].message.content
            for i in range(6)]

    async def one(i):
        if i % 2:
            r = await aengine.chat.completions.create(messages=_prompt(i), max_tokens=8, temperature=0)
            return r.choices[0].message.content
        text = ""
        async for c in await aengine.chat.completions.create(messages=_prompt(i), max_tokens=8, temperature=0,
                                                               stream=True):
            text += "".join(ch.delta.content or "" for ch in c.choices)
        return text

    async def main():
        return await asyncio.gather(*(one(i) for i in range(6)))

    assert asyncio.run(main()) == want


def test_leaving_a_stream_stops_generation(aengine, tiny):
    async def main():
        stream = await aengine.chat.completions.create(messages=_prompt(1), max_tokens=200, temperature=0,
                                                       stream=True)
        async for _ in stream:
            break
        await stream.aclose()
        r = await aengine.completions.create(prompt="after", max_tokens=2)  # runs once the first stopped
        return r

    r = asyncio.run(main())
    assert r.usage.completion_tokens == 2
    assert aengine.pending == 0


def test_async_errors_raise_at_create(aengine):
    from wgllm.errors import InvalidParameterError

    async def main():
        await aengine.chat.completions.create(messages=[], stream=True)

    with pytest.raises(InvalidParameterError):
        asyncio.run(main())


def test_async_responses_api(aengine, tiny):
    async def main():
        for _ in range(2):  # the second finds the prompt cached, as the streamed one will (f16 rounding)
            r = await aengine.responses.create(input="Tell me a story.", max_output_tokens=5, temperature=0)
        events = [e async for e in await aengine.responses.create(input="Tell me a story.", max_output_tokens=5,
                                                                  temperature=0, stream=True)]
        return r, events

    r, events = asyncio.run(main())
    text = r["output"][0]["content"][0]["text"]
    assert r["usage"]["output_tokens"] == 5 and text
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == text
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
