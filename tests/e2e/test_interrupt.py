"""Ctrl-C as a user presses it: SIGINT to a `wgllm chat` / `wgllm run` subprocess while it generates.

The model is a random 30M-parameter llama (slow enough on a CPU adapter that the reply is still
running when the signal comes); the reply is effectively endless (--max-tokens 100000)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from wgllm.testing import synth

REACT_S = 0.5  # SIGINT -> back at the prompt / exited


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    return synth.write_llama_gguf(tmp_path_factory.mktemp("slow") / "slow.gguf", "mid-30m", types="Q8_0", seed=3)


class Proc:
    """A `wgllm` subprocess with stdin piped and stdout / stderr collected as they come."""

    def __init__(self, *args):
        env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"), PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable, "-m", "wgllm", *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        for stream, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, buf), daemon=True).start()

    def _pump(self, stream, buf):
        while chunk := os.read(stream.fileno(), 65536):
            with self.lock:
                buf += chunk

    def text(self) -> str:
        with self.lock:
            return self.out.decode("utf-8", errors="replace")

    def wait_for(self, cond, timeout: float, what: str) -> float:
        """Poll until cond(stdout text) holds; the time it did."""
        deadline = time.monotonic() + timeout
        while True:
            if cond(self.text()):
                return time.monotonic()
            assert self.p.poll() is None or cond(self.text()), (what, self.text(), self.err.decode(errors="replace"))
            assert time.monotonic() < deadline, (f"timed out waiting for {what}", self.text()[-500:],
                                                 self.err.decode(errors="replace")[-2000:])
            time.sleep(0.005)

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def sigint(self) -> float:
        t = time.monotonic()
        self.p.send_signal(signal.SIGINT)
        return t

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(30)


def test_ctrl_c_in_chat_stops_the_reply_and_the_conversation_goes_on(slow_model, device):
    proc = Proc("chat", "--model", str(slow_model), "--ctx", "2048", "--max-tokens", "100000")
    prompts = 1

    def back_at_prompt(within: float, what: str) -> float:
        nonlocal prompts
        prompts += 1
        return proc.wait_for(lambda t: t.count(">>> ") == prompts, within, what)

    def ctrl_c(what: str) -> None:
        """SIGINT now: the prompt must be back within REACT_S."""
        t0 = proc.sigint()
        t1 = back_at_prompt(10, f"the prompt after Ctrl-C in {what}")
        assert t1 - t0 < REACT_S, f"{t1 - t0:.3f} s from SIGINT to the prompt ({what})"

    def reply_streams(text: str, within: float) -> None:
        """Send `text` and wait until its reply is streaming."""
        proc.send(text)
        start = len(proc.text())
        proc.wait_for(lambda t: len(t) > start + 8, within, f"the reply to {text!r} to stream")

    def settled() -> None:
        """An empty line: answered with a new prompt once the interrupted reply's thread has stopped
        (it stops at its next token or prefill chunk, seconds on a busy CPU adapter)."""
        proc.send("")
        back_at_prompt(120, "the prompt after the interrupted reply stopped")

    try:
        proc.wait_for(lambda t: t.count(">>> ") == 1, 300, "the first prompt")
        # 1. during decode
        reply_streams("hello there", 120)
        ctrl_c("decode")
        settled()
        # 2. during prefill: a long message (400 tokens, seconds of prefill), Ctrl-C before any token
        proc.send("hello " * 100)
        time.sleep(0.5)
        before = proc.text()
        ctrl_c("prefill")
        assert before.endswith(">>> "), "the reply began before the signal: not a prefill interruption"
        settled()
        # 3. the conversation is usable: the next message gets a reply
        reply_streams("and now?", 300)
        ctrl_c("decode, after the interruptions")
        proc.send("/exit")
        assert proc.p.wait(120) == 0, proc.err.decode(errors="replace")
    finally:
        proc.close()
    err = proc.err.decode(errors="replace")
    assert "Traceback" not in err and "panicked" not in err, err
    assert err.count("reply stopped") == 3, err


def test_ctrl_c_in_run_exits_130_at_once(slow_model, device):
    proc = Proc("run", "--model", str(slow_model), "--ctx", "2048", "--max-tokens", "100000", "hello")
    try:
        proc.wait_for(lambda t: len(t) > 8, 300, "the answer to stream")
        t0 = proc.sigint()
        rc = proc.p.wait(10)
        t1 = time.monotonic()
    finally:
        proc.close()
    assert rc == 130, (rc, proc.err.decode(errors="replace"))
    assert t1 - t0 < REACT_S, f"{t1 - t0:.3f} s from SIGINT to exit"
    err = proc.err.decode(errors="replace")
    assert "Traceback" not in err and "panicked" not in err, err
