"""A live `wgllm serve` app on loopback (uvicorn in a thread, a free port) over a tiny random model,
with an API key and a small body cap; the official `openai` client pointed at it."""

import pytest

from wgllm.testing import synth

API_KEY = "test-key-123"
MAX_BODY = 64 * 1024


@pytest.fixture(scope="session")
def server_model(tmp_path_factory):
    return synth.write_llama_gguf(tmp_path_factory.mktemp("srv") / "tiny.gguf", "tiny-256", seed=5)


@pytest.fixture(scope="session")
def aengine(server_model, device):
    import wgllm

    engine = wgllm.AsyncEngine(str(server_model), ctx=256)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def server(aengine):
    from wgllm.server import start_in_thread

    running = start_in_thread(aengine, api_key=API_KEY, max_body=MAX_BODY)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c
