"""Options of run / chat / serve / plan: bad values are refused before any model loads, with the
OpenAI API's ranges; a context past the model's training context gets a warning; the spinner."""

import os
import subprocess
import sys

import pytest

from wgllm import cli
from wgllm.api.protocol import parse_chat_request
from wgllm.errors import InvalidParameterError, RequestError
from wgllm.testing import synth

MISSING = "/nonexistent/never-loaded.gguf"


@pytest.fixture
def no_loading(monkeypatch):
    """Loading (or even resolving) a model fails the test: checks must come first."""
    from wgllm import hub

    def refuse(*a, **k):
        raise AssertionError("a model was resolved or loaded before the options were checked")

    monkeypatch.setattr(hub, "resolve_model", refuse)


BAD = [
    (["run", "--ctx", "0", "hi"], "--ctx must be a positive"),
    (["run", "--ctx", "-5", "hi"], "--ctx must be a positive"),
    (["chat", "--ctx", "0"], "--ctx must be a positive"),
    (["serve", "--ctx", "0"], "--ctx must be a positive"),
    (["plan", "--ctx", "0"], "--ctx must be a positive"),
    (["plan", "--chunk", "0"], "--chunk"),
    (["run", "--max-tokens", "0", "hi"], "--max-tokens must be an integer, at least 1, not 0"),
    (["run", "-n", "-3", "hi"], "--max-tokens must be"),
    (["chat", "--max-tokens", "0"], "--max-tokens must be"),
    (["run", "--temperature", "-0.5", "hi"], "--temperature must be between 0 and 2"),
    (["run", "--temp", "2.5", "hi"], "--temperature must be"),
    (["run", "--temperature", "nan", "hi"], "--temperature must be"),
    (["run", "--top-p", "0", "hi"], "--top-p must be greater than 0 and at most 1"),
    (["run", "--top-p", "1.5", "hi"], "--top-p"),
    (["run", "--top-k", "-1", "hi"], "--top-k must be an integer, at least 0"),
    (["run", "--min-p", "-0.1", "hi"], "--min-p must be between 0 and 1"),
    (["chat", "--min-p", "1.5"], "--min-p"),
    (["run", "--repeat-penalty", "0", "hi"], "--repeat-penalty must be greater than 0"),
    (["run", "--repeat-penalty", "-1", "hi"], "--repeat-penalty"),
    (["run", "--seed", str(2**64), "hi"], "--seed"),
    (["run", "--retries", "-1", "hi"], "--retries"),
    (["run", "--hang-timeout", "0", "hi"], "--hang-timeout"),
    (["run", "--gpu-memory", "lots", "hi"], "lots"),
    (["run", "--faults", "bogus", "hi"], "bogus"),
    (["run", "--in-process", "--faults", "kill@decode:3", "hi"], "worker process"),
    (["serve", "--faults", "bogus"], "bogus"),
    (["serve", "--retries", "-1"], "--retries"),
]


@pytest.mark.parametrize("argv, needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_are_refused_before_loading(argv, needle, no_loading, capsys):
    model = [] if argv[0] == "plan" else ["--model", MISSING]
    assert cli.main(argv + model) == 1
    err = capsys.readouterr().err
    assert "error:" in err and needle in " ".join(err.split()), err
    assert "Traceback" not in err and "never-loaded" not in err


def test_bad_option_in_a_subprocess_is_one_line_and_exit_1():
    res = subprocess.run([sys.executable, "-m", "wgllm", "run", "--max-tokens", "0", "hi"], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, XDG_RUNTIME_DIR="/tmp"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["error: --max-tokens must be an integer, at least 1, not 0."]


VALUES = {
    "max_tokens": [-1, 0, 1, 100],
    "temperature": [-0.1, 0.0, 1.0, 2.0, 2.1],
    "top_p": [0.0, 0.01, 1.0, 1.1],
    "top_k": [-1, 0, 40],
    "min_p": [-0.1, 0.0, 1.0, 1.1],
    "seed": [-(2**63), -(2**63) - 1, 2**63 - 1, 2**63],
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_cli_and_api_accept_the_same_values(name):
    for value in VALUES[name]:
        try:
            parse_chat_request({"messages": [{"role": "user", "content": "hi"}], name: value})
            api_ok = True
        except InvalidParameterError:
            api_ok = False
        args = cli.build_parser().parse_args(["run", "--" + name.replace("_", "-"), str(value), "hi"])
        try:
            cli.check_options(args)
            cli_ok = True
        except RequestError:
            cli_ok = False
        assert cli_ok == api_ok, (name, value, cli_ok, api_ok)


# --- the training-context warning ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synth.write_llama_gguf(tmp_path_factory.mktemp("opt") / "tiny.gguf", "tiny-256", seed=2)  # trained: 256


def _run(*args, input=None):
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    return subprocess.run([sys.executable, "-m", "wgllm", *args], capture_output=True, text=True, timeout=300,
                          env=env, input=input)


def test_run_and_chat_warn_past_the_training_context(tiny, device):
    res = _run("run", "--model", str(tiny), "--ctx", "512", "--max-tokens", "2", "hi")
    assert res.returncode == 0, res.stderr
    assert "warning: --ctx 512 is beyond the model's training context of 256 tokens" in res.stderr
    assert "reading the prompt" not in res.stderr and "loading" not in res.stderr  # no spinner off a terminal
    res = _run("chat", "--model", str(tiny), "--ctx", "1024", input="/exit\n")
    assert res.returncode == 0 and "--ctx 1024 is beyond the model's training context of 256" in res.stderr
    res = _run("run", "--model", str(tiny), "--ctx", "128", "--max-tokens", "2", "hi")
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr


def test_warn_ctx_only_when_asked_beyond_training(capsys):
    class Cfg:
        n_ctx_train = 2048

    class E:
        cfg, n_ctx = Cfg(), 4096

    cli._warn_ctx(E(), 4096)
    assert "beyond the model's training context of 2048" in capsys.readouterr().err
    cli._warn_ctx(E(), None)  # not asked: the default never exceeds it (and no warning without a request)
    E.n_ctx = 2048
    cli._warn_ctx(E(), 2048)
    assert capsys.readouterr().err == ""


# --- the spinner ---------------------------------------------------------------------------------


def test_status_texts():
    assert cli.status_text("prefill", 0, 37) == "reading the prompt: 37 tokens"
    assert cli.status_text("prefill", 0, 1) == "reading the prompt: 1 token"
    assert cli.status_text("prefill", 256, 1024) == "reading the prompt: 256/1024 tokens (25%)"
    assert cli.load_text("smollm2-135m", "NVIDIA H100 via Vulkan") == "loading smollm2-135m on NVIDIA H100 via Vulkan..."
    assert cli.load_text("m.gguf") == "loading m.gguf..."


class _Tok:
    def stream_decoder(self):
        class D:
            def add(self, t):
                return f"<{t}>"

            def flush(self):
                return ""
        return D()


class FakeEngine:
    """Reports prefill progress as the runtime engine does, then yields two tokens."""

    tokenizer = _Tok()

    def __init__(self):
        self.on_progress = None
        self.seen_callback = None

    def generate(self, prompt, max_tokens, sampling):
        self.seen_callback = self.on_progress
        for done in range(0, len(prompt), 16):
            self.on_progress("prefill", done, len(prompt))
        yield 7
        yield 8


class RecordingFeedback(cli.Feedback):
    def __init__(self, printed):
        super().__init__(enabled=False)
        self.printed, self.stopped_at = printed, None

    def stop(self):
        if self.stopped_at is None and self.active:
            self.stopped_at = len(self.printed())
        super().stop()


def test_stream_wires_progress_into_the_spinner_and_stops_it_at_the_first_token(capsys):
    engine = FakeEngine()
    args = cli.build_parser().parse_args(["run", "x"])
    fb = RecordingFeedback(lambda: capsys.readouterr().out)
    text = cli._stream(engine, list(range(40)), args, feedback=fb)
    assert text == "<7><8>"
    assert engine.seen_callback is not None and engine.on_progress is None  # set for the call, then restored
    assert fb.texts == ["reading the prompt: 40 tokens", "reading the prompt: 40 tokens",
                        "reading the prompt: 16/40 tokens (40%)", "reading the prompt: 32/40 tokens (80%)"]
    assert fb.stopped_at == 0  # stopped before the first token was printed
    assert not fb.active


def test_stream_on_the_real_engine_reports_prefill_chunks(tiny, device):
    from wgllm.runtime.engine import Engine

    engine = Engine(str(tiny), ctx=256, chunk=32)
    ids = engine.tokenizer.encode("hello " * 30, add_special=True)
    args = cli.build_parser().parse_args(["run", "--max-tokens", "2", "x"])
    fb = cli.Feedback(enabled=False)
    cli._stream(engine, ids, args, feedback=fb)
    n = len(ids)
    assert fb.texts[:2] == [f"reading the prompt: {n} tokens"] * 2
    assert f"reading the prompt: 32/{n} tokens ({100 * 32 // n}%)" in fb.texts
    assert engine.on_progress is None


def test_spinner_on_a_terminal(tiny, device):
    """With stderr on a pseudo-terminal the spinner says what loads where, then reads the prompt."""
    import pty
    import select

    master, slave = pty.openpty()
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    p = subprocess.Popen([sys.executable, "-m", "wgllm", "run", "--model", str(tiny), "--ctx", "256",
                          "--max-tokens", "3", "hello " * 20], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    tty = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            tty += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    stdout = p.stdout.read().decode()
    assert p.wait(60) == 0
    shown = tty.decode(errors="replace")
    assert "loading tiny.gguf" in shown and "loading tiny.gguf on " in shown, shown[-2000:]
    assert "reading the prompt: " in shown, shown[-2000:]
    assert "\x1b" not in stdout and "reading" not in stdout  # the answer stays clean
