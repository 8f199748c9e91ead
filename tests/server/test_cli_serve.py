"""`wgllm serve` as a user runs it: a subprocess on loopback that answers, and option errors that
print one message without a traceback."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wgllm_serve_answers_and_stops(server_model, device):
    port = _free_port()
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    proc = subprocess.Popen([sys.executable, "-m", "wgllm", "serve", "--model", str(server_model), "--ctx", "512",
                             "--port", str(port), "--api-key", "k", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer k"},
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert r.status_code == 200 and r.json()["model"] == "tiny" and r.json()["usage"]["completion_tokens"] == 3
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "warning: --ctx 512 is beyond the model's training context of 256 tokens" in err  # tiny-256: 256


def test_bad_options_give_one_message():
    r = subprocess.run([sys.executable, "-m", "wgllm", "serve", "--port", "70000"], capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "--port must be between 0 and 65535" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "wgllm", "serve", "--ctx", "0", "--model", "/nonexistent.gguf"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "--ctx must be a positive" in r.stderr and "Traceback" not in r.stderr
