"""The `wgllm` command line: run, chat, serve, pull, models, devices, plan, doctor.

A user's mistake (a missing model, a bad option, no adapter) prints a one
paragraph message and exits with status 1, never a traceback; set
WGLLM_DEBUG=1 to see tracebacks anyway. Options that need no model to judge
are checked before anything loads. `run` and `chat` show a spinner on a
terminal until the first token, and generate in a worker thread, so Ctrl-C
stops a reply at once: `chat` goes back to its prompt (the turn is dropped),
`run` exits with status 130. Tables are not wrapped when piped.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rich.console import Console, ConsoleDimensions
from rich.table import Table

from wgllm.errors import WgllmError

PIPED_WIDTH = 10_000  # columns when the output is not a terminal: nothing wraps or is cut with "…"


class _Console(Console):
    """A rich Console that neither wraps nor truncates when its output is not a terminal
    (piped, redirected or captured), so that `wgllm devices | grep ...` sees whole rows."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(PIPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


err = _Console(stderr=True)
out = _Console()


def _gen_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None, help="model name (see `wgllm models`) or path to a .gguf file")
    p.add_argument("--device", "-d", default=None, help="adapter index or name substring (see `wgllm devices`)")
    p.add_argument("--ctx", type=int, default=None, help="context length in tokens (default: min(model's, 4096))")
    p.add_argument("--precision", choices=["auto", "f16", "f32"], default="auto", help="activation / KV precision")
    p.add_argument("--max-tokens", "-n", type=int, default=256, help="most tokens to generate")
    p.add_argument("--temperature", "--temp", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--stats", action="store_true", help="print speed figures to stderr afterwards")
    _memory_option(p)
    _split_option(p)
    _recovery_options(p)


def _recovery_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("GPU failures")
    g.add_argument("--recovery", choices=["on", "off"], default="on",
                   help="rebuild the device and go on after a GPU failure (default: on)")
    g.add_argument("--retries", type=int, default=2, help="rebuilds on the same adapter before falling back")
    g.add_argument("--no-fallback", action="store_true", help="never move to another adapter")
    g.add_argument("--hang-timeout", type=float, default=120.0, metavar="S",
                   help="seconds a GPU read-back may take before it counts as a hang")
    g.add_argument("--faults", default=None, metavar="SPEC",
                   help="inject GPU faults for testing, e.g. lost@decode:17, kill@decode:5 (env WGLLM_FAULTS)")
    g.add_argument("--in-process", action="store_true",
                   help="run the model in this process, not in a supervised worker process (a driver crash "
                        "then ends wgllm)")


def _memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu-memory", default=None, metavar="SIZE",
                   help="memory budget per adapter, e.g. 4GiB, or 0=4GiB,1=8GiB (default: measured; "
                        "env WGLLM_GPU_MEMORY)")


def _split_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="auto", metavar="SPEC",
                   help="split the model over adapters: auto (when no single adapter holds it; default), none, "
                        "or explicit parts ADAPTER:FIRST-LAST, e.g. 0:0-19,1:20-31")


def build_parser() -> argparse.ArgumentParser:
    import wgllm

    parser = argparse.ArgumentParser(prog="wgllm", description="Run GGUF language models on any GPU through WebGPU.")
    parser.add_argument("--version", action="version", version=f"wgllm {wgllm.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="answer one prompt and exit")
    p.add_argument("prompt", help="the prompt (use - to read it from stdin)")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    _gen_options(p)
    p = sub.add_parser("chat", help="interactive chat (/reset, /exit)")
    _gen_options(p)
    _serve_parser(sub)
    p = sub.add_parser("pull", help="fetch a model into the cache")
    p.add_argument("name", nargs="?", default=None, help="model name (default: the default model)")
    p = sub.add_parser("models", help="list models in the cache (--catalog: known models and what they need)")
    p.add_argument("--catalog", action="store_true", help="the catalog: memory need per context, fits here?")
    p.add_argument("--device", "-d", default=None, help="adapter or policy for 'fits here' (default: auto)")
    p.add_argument("--json", action="store_true")
    _memory_option(p)
    p = sub.add_parser("devices", help="list WebGPU adapters")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("plan", help="where and how a model would run, and why (loads no weights)")
    p.add_argument("model", nargs="?", default=None,
                   help="a .gguf path, a model name, or a catalog name[:quant] (e.g. llama-3-8b:q4_0)")
    p.add_argument("--ctx", type=int, default=None, help="context length (default: min(model's, 4096), "
                                                         "reduced if it does not fit)")
    p.add_argument("--device", "-d", default=None,
                   help="adapter index or name substring, or auto / high-performance / low-power")
    p.add_argument("--precision", choices=["auto", "f16", "f32"], default="auto")
    p.add_argument("--chunk", type=int, default=None,
                   help="prefill tokens per pass (default: 32 on a CPU adapter, 128 on a GPU)")
    p.add_argument("--json", action="store_true")
    _memory_option(p)
    _parallel_option(p)
    _split_option(p)
    p = sub.add_parser("doctor", help="this machine at a glance: adapters, drivers, what fits, hazards")
    p.add_argument("--json", action="store_true")
    _memory_option(p)
    return parser


def _parallel_option(p) -> None:
    p.add_argument("--parallel", "-np", type=int, default=1, metavar="N",
                   help="sequences served at once (continuous batching; default 1). Each has a context of "
                        "--ctx tokens, and the KV cache holds all N")


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, "
                                     "/v1/models, /health, /metrics)")
    p.add_argument("--model", "-m", default=None, help="model name (see `wgllm models`) or path to a .gguf file")
    p.add_argument("--device", "-d", default=None, help="adapter index or name substring (see `wgllm devices`)")
    p.add_argument("--ctx", type=int, default=None, help="context length in tokens (default: min(model's, 4096))")
    p.add_argument("--precision", choices=["auto", "f16", "f32"], default="auto", help="activation / KV precision")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("WGLLM_API_KEY"),
                   help="require `Authorization: Bearer KEY` (default: env WGLLM_API_KEY; none: no key)")
    p.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    _parallel_option(p)
    _split_option(p)
    p.add_argument("--alias", action="append", default=[], metavar="NAME",
                   help="another model name requests may use (repeatable; listed by /v1/models)")
    p.add_argument("--strict-model-names", action="store_true",
                   help="answer 404 to a request naming another model (default: the loaded model serves it)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _memory_option(p)
    _recovery_options(p)


# --- checking options before anything loads ----------------------------------------------------

SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")


def check_options(args) -> None:
    """Refuse option values that need no model to judge, before anything is loaded (RequestError /
    InvalidParameterError: one message, exit 1). --max-tokens and the sampling options follow the
    OpenAI API's ranges (`wgllm.api.limits`, the table its request checks are built from)."""
    from wgllm.api import limits
    from wgllm.errors import RequestError
    from wgllm.kernels.constants import MAX_BATCH

    ctx = getattr(args, "ctx", None)
    if ctx is not None and ctx < 1:
        raise RequestError(f"--ctx must be a positive number of tokens, not {ctx}. Leave it out for the default "
                           f"(the smaller of the model's training context and 4096).")
    chunk = getattr(args, "chunk", None)
    if chunk is not None and chunk < 1:
        raise RequestError(f"--chunk must be a positive number of tokens, not {args.chunk}.")
    parallel = getattr(args, "parallel", 1)
    if not 1 <= parallel <= MAX_BATCH:
        raise RequestError(f"--parallel must be from 1 to {MAX_BATCH} sequences, not {parallel}.")
    if getattr(args, "gpu_memory", None):
        from wgllm.gpu.inventory import parse_caps

        parse_caps(args.gpu_memory)
    if hasattr(args, "retries"):
        _check_recovery_options(args)
    if not hasattr(args, "max_tokens"):
        return
    limits.check("max_tokens", args.max_tokens, "--max-tokens")
    for name in SAMPLING_OPTIONS:
        limits.check(name, getattr(args, name), "--" + name.replace("_", "-"))
    _sampling(args).validate()  # the runtime's own rules too (the same ranges)


def _check_recovery_options(args) -> None:
    from wgllm.errors import RequestError
    from wgllm.runtime.faults import FaultInjector

    if args.retries < 0:
        raise RequestError(f"--retries must be 0 or more, not {args.retries}.")
    if not args.hang_timeout > 0:
        raise RequestError(f"--hang-timeout must be more than 0 seconds, not {args.hang_timeout}.")
    _recovery(args).validate()
    if args.faults:
        FaultInjector(args.faults, process=not args.in_process)


def _warn_ctx(engine, asked: int | None) -> None:
    """A warning when the context asked for is beyond the model's training context (as `wgllm plan`)."""
    train = getattr(engine.cfg, "n_ctx_train", 0)
    if asked and train and engine.n_ctx > train:
        err.print(f"[yellow]warning: --ctx {engine.n_ctx} is beyond the model's training context of {train} "
                  f"tokens; quality may drop past {train} tokens.[/yellow]", highlight=False)


def _sampling(args):
    from wgllm.runtime.sampler import SamplingParams

    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repeat_penalty=args.repeat_penalty, seed=args.seed)


def _recovery(args):
    from wgllm.runtime.recovery import RecoveryPolicy

    return RecoveryPolicy(enabled=args.recovery == "on", retries=args.retries, fallback=not args.no_fallback,
                          hang_timeout_s=args.hang_timeout)


def _notice(event) -> None:
    """One line on stderr when the engine recovered from (or gave up on) a GPU failure."""
    if event.action in ("continued", "gave up"):
        err.print(f"[yellow]{event.notice()}[/yellow]", highlight=False)


# --- feedback until the first token -----------------------------------------------------------


def load_text(model: str, adapter: str | None = None) -> str:
    """The spinner's text while a model loads."""
    return f"loading {model} on {adapter}..." if adapter else f"loading {model}..."


def status_text(stage: str, done: int, total: int) -> str:
    """The spinner's text for an `Engine.on_progress(stage, done, total)` report: for "prefill",
    "reading the prompt: 37 tokens", then "reading the prompt: 256/1024 tokens (25%)" as chunks run."""
    if stage == "prefill":
        if done > 0 and total > 0:
            return f"reading the prompt: {done}/{total} tokens ({100 * done // total}%)"
        return f"reading the prompt: {total} token{'s' if total != 1 else ''}"
    return f"{stage}: {done}/{total}" if total else stage


class Feedback:
    """A spinner on stderr saying what runs until the first token (what rich's `Console.status` shows,
    redrawn at once on each change). Shown only when `enabled` (default: when the console is a
    terminal); `texts` records what it said, shown or not."""

    def __init__(self, console: Console | None = None, enabled: bool | None = None):
        self.console = console if console is not None else err
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.texts: list[str] = []
        self.active = False
        self._live = self._spinner = None

    def show(self, text: str) -> None:
        """Start the spinner with `text`, or change its text."""
        self.texts.append(text)
        self.active = True
        if not self.enabled:
            return
        if self._live is None:
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", text=text, style="status.spinner")
            self._live = Live(self._spinner, console=self.console, refresh_per_second=12.5, transient=True)
            self._live.start(refresh=True)
        else:
            self._spinner.update(text=text)
            self._live.refresh()

    def progress(self, stage: str, done: int, total: int) -> None:
        """An `Engine.on_progress` callback."""
        self.show(status_text(stage, done, total))

    def stop(self) -> None:
        self.active = False
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> "Feedback":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _show_adapter(feedback: Feedback, label: str):
    """An engine's on_planned callback: the spinner says where the model is loading."""

    def show(adapter_summary: str) -> None:
        if feedback.active:
            feedback.show(load_text(label, adapter_summary))

    return show


def _model_label(model: str | None) -> str:
    from pathlib import Path

    from wgllm import hub

    if model is None:
        return hub.DEFAULT_MODEL
    p = Path(model).expanduser()
    return p.name if p.exists() else str(model)


def _fetch_first(model: str | None):
    """Resolve (and fetch, with its own progress bar) the model before any spinner starts."""
    from wgllm import hub

    return hub.resolve_model(model)


def _engine(args):
    from wgllm.runtime.engine import Engine
    from wgllm.runtime.supervisor import Supervisor

    path = _fetch_first(args.model)
    with Feedback() as fb:
        fb.show(load_text(_model_label(args.model)))
        engine = (Engine if args.in_process else Supervisor)(
            str(path), device=args.device, ctx=args.ctx, precision=args.precision, gpu_memory=args.gpu_memory,
            split=args.split, recovery=_recovery(args), faults=args.faults, on_event=_notice,
            on_planned=_show_adapter(fb, _model_label(args.model)))
    _warn_ctx(engine, args.ctx)
    return engine


def _messages(args, history: list[dict]) -> list[dict]:
    sys_msg = [{"role": "system", "content": args.system}] if args.system else []
    return sys_msg + history


# --- generating, interruptibly -----------------------------------------------------------------


class _Stopped(BaseException):
    """Raised inside the generation thread (from `on_progress`) to stop a cancelled prefill."""


class Generation:
    """`engine.generate` in a worker thread; the caller's thread takes its events from a queue.

    Ctrl-C (KeyboardInterrupt) then always lands in the caller's thread, in a queue wait, never inside
    a GPU call: the caller calls `cancel()` and goes on at once, and the worker stops cleanly at its
    next token or prefill chunk (the engine's KV cache stays consistent). `wait()` joins the worker:
    call it before the engine is used again. Events: ("progress", (stage, done, total)),
    ("token", id), ("done", None), ("error", exception)."""

    POLL_S = 0.05

    def __init__(self, engine, prompt: list[int], **kwargs):
        import queue
        import threading

        self.engine, self.prompt, self.kwargs = engine, prompt, kwargs
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._work, name="wgllm-generate", daemon=True)

    def _work(self) -> None:
        engine = self.engine
        previous = getattr(engine, "on_progress", None)
        engine.on_progress = self._progress
        final: tuple = ("done", None)
        try:
            gen = engine.generate(self.prompt, **self.kwargs)
            try:
                for tok in gen:
                    if self.cancelled.is_set():
                        break
                    self.events.put(("token", tok))
            finally:
                gen.close()
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            final = ("error", exc)
        finally:
            engine.on_progress = previous  # before "done": the next generation may set its own at once
            self.events.put(final)

    def _progress(self, stage: str, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise _Stopped()
        self.events.put(("progress", (stage, done, total)))

    def __iter__(self):
        """The events, in the caller's thread, until ("done") or ("error") (raised here)."""
        import queue

        self.thread.start()
        while True:
            try:
                kind, value = self.events.get(timeout=self.POLL_S)
            except queue.Empty:
                continue
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield kind, value

    def cancel(self) -> None:
        self.cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker (True when it has finished)."""
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()


def _stream(engine, prompt_ids, args, feedback: Feedback | None = None, on_start=None) -> str:
    """Generate, printing text as it comes; returns the whole text. A spinner says what runs until
    the first token. Ctrl-C raises KeyboardInterrupt here at once, with the generation cancelled
    (its thread may still be finishing: `on_start` gets the `Generation`, to `wait()` for it before
    the engine is used again)."""
    dec = engine.tokenizer.stream_decoder()
    pieces = []
    fb = feedback if feedback is not None else Feedback()
    gen = Generation(engine, prompt_ids, max_tokens=args.max_tokens, sampling=_sampling(args))
    if on_start is not None:
        on_start(gen)
    try:
        fb.show(status_text("prefill", 0, len(prompt_ids)))
        for kind, value in gen:
            if kind == "progress":
                if fb.active:
                    fb.progress(*value)
                continue
            fb.stop()  # the first token
            piece = dec.add(value)
            if piece:
                pieces.append(piece)
                out.out(piece, end="", highlight=False)
                out.file.flush()
    except BaseException:
        gen.cancel()
        raise
    finally:
        fb.stop()
    tail = dec.flush()
    if tail:
        pieces.append(tail)
        out.out(tail, end="", highlight=False)
    out.out("")
    if args.stats:
        _print_stats(engine)
    return "".join(pieces)



def _print_stats(engine) -> None:
    s = engine.stats
    err.print(
        f"[dim]{engine.adapter_summary} · {engine.precision} · prompt {s.prompt_tokens} tok "
        f"({s.prefill_tok_s:.1f} tok/s) · generated {s.completion_tokens} tok ({s.decode_tok_s:.1f} tok/s) · "
        f"TTFT {s.ttft_s * 1000:.0f} ms · {s.finish_reason}[/dim]"
    )


def _exit_interrupted(gen: Generation | None) -> int:
    """Ctrl-C in `wgllm run`: status 130 at once. The cancelled generation gets a moment to stop;
    if its thread is still inside a GPU call, the process leaves without tearing the device down
    under it (os._exit, after flushing what was printed)."""
    out.out("")
    if gen is None or gen.wait(0.2):
        return 130
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(130)


def cmd_run(args) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    engine = _engine(args)
    if args.raw:
        ids = engine.tokenizer.encode(prompt, add_special=True)
    else:
        ids = engine.chat_prompt(_messages(args, [{"role": "user", "content": prompt}]))
    started: list[Generation] = []
    try:
        _stream(engine, ids, args, on_start=started.append)
    except KeyboardInterrupt:
        return _exit_interrupted(started[-1] if started else None)
    return 0


def cmd_chat(args) -> int:
    engine = _engine(args)
    err.print(f"[dim]{engine.path.name} on {engine.adapter_summary} ({engine.precision}). "
              f"/reset clears the conversation, /exit quits; Ctrl-C stops a reply.[/dim]")
    history: list[dict] = []
    last: list[Generation] = []

    def settle() -> None:
        """Wait for an interrupted reply's thread to stop before the engine is used again."""
        while last:
            if not last[-1].wait(0.2):
                with Feedback() as fb:
                    fb.show("stopping the interrupted reply...")
                    last[-1].wait()
            last.pop()

    try:
        while True:
            try:
                line = input(">>> ")
            except (EOFError, KeyboardInterrupt):
                out.out("")
                return 0
            cmd = line.strip()
            if cmd in ("/exit", "/quit", "/bye"):
                return 0
            try:
                settle()
            except KeyboardInterrupt:
                out.out("")
                err.print("[dim]the interrupted reply is still stopping; this message is dropped[/dim]")
                continue
            if cmd == "/reset":
                history = []
                engine.reset()
                err.print("[dim]conversation cleared[/dim]")
                continue
            if not cmd:
                continue
            history.append({"role": "user", "content": line})
            try:
                reply = _stream(engine, engine.chat_prompt(_messages(args, history)), args,
                                on_start=last.append)
            except KeyboardInterrupt:
                out.out("")
                err.print("[dim]reply stopped (this turn is dropped from the conversation)[/dim]")
                history.pop()
                continue
            except WgllmError as exc:
                if not exc.recoverable:
                    raise
                err.print(f"[red]{exc.message}[/red]")
                history.pop()
                continue
            last.clear()
            history.append({"role": "assistant", "content": reply})
    finally:
        settle()


def cmd_serve(args) -> int:
    from wgllm.api.async_engine import AsyncEngine
    from wgllm.api.engine import Engine
    from wgllm.errors import RequestError
    from wgllm.server import serve

    if not 0 <= args.port <= 65535:
        raise RequestError(f"--port must be between 0 and 65535, not {args.port}.")
    if args.max_body < 1024:
        raise RequestError(f"--max-body must be at least 1024 bytes, not {args.max_body}.")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        err.print(f"[yellow]warning: listening on {args.host} without --api-key: anyone who can reach this "
                  f"machine can use the model.[/yellow]")
    _fetch_first(args.model)
    with Feedback() as fb:
        fb.show(load_text(_model_label(args.model)))
        engine = Engine(args.model, device=args.device, ctx=args.ctx, precision=args.precision,
                        gpu_memory=args.gpu_memory, split=args.split, recovery=_recovery(args), faults=args.faults,
                        in_process=args.in_process, parallel=args.parallel,
                        on_planned=_show_adapter(fb, _model_label(args.model)))
    _warn_ctx(engine, args.ctx)
    many = f", {args.parallel} sequences at once" if args.parallel > 1 else ""
    err.print(f"[dim]{engine.model_id} on {engine.adapter_summary} ({engine.precision}, ctx {engine.n_ctx}{many}); "
              f"OpenAI API at http://{args.host}:{args.port}/v1[/dim]")
    try:
        serve(AsyncEngine(engine=engine), host=args.host, port=args.port, api_key=args.api_key,
              max_body=args.max_body, log_level=args.log_level, aliases=tuple(args.alias),
              strict_model_names=args.strict_model_names)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    err.print("[dim]server stopped[/dim]")
    return 0


def cmd_pull(args) -> int:
    from wgllm import hub

    path = hub.pull(args.name or hub.DEFAULT_MODEL)
    out.print(f"{path}")
    return 0


def cmd_models(args) -> int:
    """The models in the cache (read from their headers only: fast) and those fetchable by name."""
    import json

    from wgllm import hub

    if args.catalog:
        return _models_catalog(args)
    local, known = hub.list_local(), hub.known_models()
    if args.json:
        out.out(json.dumps({
            "cache": str(hub.cache_dir()),
            "models": [{"name": m.name, "path": str(m.path), "size": m.size, "architecture": m.architecture,
                        "quantization": m.quantization, "n_params": m.n_params, "valid": m.valid, "error": m.error,
                        "runnable": m.valid and hub.architecture_runnable(m.architecture)} for m in local],
            "fetchable": [{"name": e.name, "aliases": list(e.aliases), "architecture": e.architecture,
                           "runnable": e.runnable, "size": e.size, "source": e.source,
                           "description": e.description} for e in known],
        }, indent=2))
        return 0
    table = Table("name", "size", "architecture", "quantization", "runs", "path")
    for m in local:
        runs = "yes" if m.valid and hub.architecture_runnable(m.architecture) else (
            "no" if m.valid else "[red]no: not a valid GGUF[/red]")
        table.add_row(m.name, f"{m.size / 2**20:.1f} MiB", m.architecture or "?", m.quantization or "?", runs,
                      str(m.path))
    out.print(table)
    err.print(f"[dim]cache: {hub.cache_dir()} · fetchable by name: {_fetchable_text(known)}[/dim]",
              highlight=False)
    return 0


def _fetchable_text(known) -> str:
    """The registry's names, those this version cannot run marked as such."""
    return ", ".join(e.name if e.runnable else f"{e.name} ({e.architecture}: not runnable yet)" for e in known)


def cmd_devices(args) -> int:
    import json

    from wgllm.gpu.discovery import list_adapters, rank

    adapters = list_adapters()
    if args.json:
        out.out(json.dumps([a.as_dict() for a in adapters], indent=2))
        return 0
    if not adapters:
        from wgllm.errors import NoAdapterError

        raise NoAdapterError()
    best = min(adapters, key=rank).index
    table = Table("#", "name", "type", "backend", "vendor", "shader-f16", "max buffer", "max storage binding")
    for a in adapters:
        mark = " (default)" if a.index == best else ""
        table.add_row(str(a.index), a.name + mark, a.kind, a.backend, f"{a.vendor} {a.vendor_id:#06x}",
                      "yes" if a.shader_f16 else "no", f"{a.max_buffer_size / 2**20:,.0f} MiB",
                      f"{a.max_storage_binding / 2**20:,.0f} MiB")
    out.print(table)
    return 0


# --- planning ----------------------------------------------------------------------------


def _budgets(args, required: bool = True) -> list:
    """AdapterBudgets of this machine with the --gpu-memory caps (NoAdapterError if none and required)."""
    from wgllm.errors import NoAdapterError
    from wgllm.gpu.discovery import list_adapters
    from wgllm.gpu.inventory import inventory

    try:
        infos = list_adapters()
    except NoAdapterError:
        if required:
            raise
        infos = []
    return inventory(infos, caps=args.gpu_memory)


def _layout_for(spec: str | None):
    """(ModelLayout, where it came from) of a .gguf path, a catalog name[:quant] or a model name."""
    from pathlib import Path

    from wgllm import hub
    from wgllm.model.gguf import GGUFFile
    from wgllm.plan import catalog

    if spec:
        if Path(spec).expanduser().is_file():
            path = Path(spec).expanduser()
            return catalog.layout_from_gguf(GGUFFile(path)), str(path)
        found = catalog.split_spec(spec)
        if found is not None:
            entry, quant = found
            return catalog.catalog_layout(entry.name, quant), f"catalog entry {entry.title} {quant}"
    path = hub.resolve_model(spec)
    return catalog.layout_from_gguf(GGUFFile(path)), str(path)


def cmd_plan(args) -> int:
    import json

    from wgllm.errors import ModelTooLargeError
    from wgllm.plan.planner import make_plan

    layout, source = _layout_for(args.model)
    try:
        plan = make_plan(layout, _budgets(args), ctx=args.ctx, policy=args.device, precision=args.precision,
                         chunk=args.chunk, split=args.split, parallel=args.parallel)
    except ModelTooLargeError as exc:
        if not args.json:
            raise
        needs = [{"adapter": a, "needed": n, "available": v} for a, n, v in exc.needs]
        out.out(json.dumps({"error": "ModelTooLargeError", "message": exc.message, "needs": needs,
                            "alternatives": exc.alternatives}, indent=2))
        return 1
    if args.json:
        out.out(json.dumps(dict(plan.as_dict(), source=source), indent=2))
        return 0
    table = Table("", "plan, and why", title=f"Plan for {source}", show_lines=True, title_justify="left")
    for line in plan.explain():
        key, _, text = line.partition(": ")
        table.add_row(f"[bold]{key}[/bold]", text)
    out.print(table)
    if not plan.runnable:
        err.print("[yellow]This plan is for information: this version of wgllm cannot run this model.[/yellow]")
    return 0


def cmd_doctor(args) -> int:
    import json

    from wgllm.doctor import diagnose

    report = diagnose(caps=args.gpu_memory)
    if args.json:
        out.out(json.dumps(report, indent=2))
    else:
        _print_doctor(report)
    return 0 if report["ok"] else 1


def _print_doctor(report: dict) -> None:
    from wgllm.plan.planner import fmt_bytes

    t = Table("#", "adapter", "type", "backend", "f16", "budget (source)", "usable", "max binding",
              title="Adapters", title_justify="left")
    for a in report["adapters"]:
        total = f" of {fmt_bytes(a['total'])}" if a["total"] else ""
        budget = fmt_bytes(a["budget"]) + total if a["budget"] is not None else "unknown"
        t.add_row(str(a["index"]), a["name"], a["kind"], a["backend"], "yes" if a["shader_f16"] else "no",
                  f"{budget} ({a['source']})", fmt_bytes(a["usable"]), fmt_bytes(a["max_storage_binding"]))
    out.print(t)
    v = report["vulkan"]
    if v["needed"]:
        drivers = ", ".join(v["drivers"]) or "[red]none found[/red]"
        out.print(f"Vulkan loader: {v['loader'] or '[red]missing[/red]'} · drivers: {drivers}")
        if v["hint"]:
            out.print(f"[yellow]To fix: {v['hint']}.[/yellow]")
    else:
        out.print(f"Vulkan: optional on {v['platform']} (loader: {v['loader'] or 'none'})")
    _print_catalog_fits(report)
    out.print("[bold]Hazards[/bold]" if report["hazards"] else "No known hazards.")
    for h in report["hazards"]:
        out.print(f"  • {h}", highlight=False)


def _print_catalog_fits(report: dict) -> None:
    from wgllm.plan.planner import fmt_bytes

    if not report["adapters"]:
        return
    t = Table("model", "quant", "ctx", "runnable", *(f"#{a['index']}" for a in report["adapters"]), "split",
              title="Catalog models at their default context", title_justify="left")
    for row in report["catalog"]:
        cells = [f"[green]fits[/green] {f['precision']} {fmt_bytes(f['need'])}" if f["fits"]
                 else f"[red]no[/red]: needs {fmt_bytes(f['need'])}" for f in row["adapters"]]
        split = f"[yellow]needs a split[/yellow]: {row['split']}" if row.get("split") else "-"
        t.add_row(row["model"], row["quantization"], str(row["n_ctx"]), "yes" if row["runnable"] else "no", *cells,
                  split)
    out.print(t)


def _models_catalog(args) -> int:
    import json

    from wgllm.doctor import CATALOG_CONTEXTS, catalog_rows
    from wgllm.plan.planner import fmt_bytes

    budgets = _budgets(args, required=False)
    rows = catalog_rows(budgets, args.device)
    if args.json:
        out.out(json.dumps(rows, indent=2))
        return 0
    act = rows[0]["precision"] if rows else "f16"
    t = Table("model", "weights", *(f"@{c}" for c in CATALOG_CONTEXTS), "fits here", "runs",
              title=f"Catalog: memory need per context (in {act}, the precision of this machine's preferred "
                    f"adapter)", title_justify="left")
    t.columns[0].no_wrap = True
    for r in rows:
        needs = [fmt_bytes(r["need"][c]) if c in r["need"] else "-" for c in CATALOG_CONTEXTS]
        f = r["fits"]
        here = f"#{f['index']} {f['precision']} {f['n_ctx']}" if f else "[red]no[/red]"
        t.add_row(f"{r['model']} {r['quantization']}", fmt_bytes(r["weights"]), *needs, here,
                  "yes" if r["runnable"] else "no")
    out.print(t)
    err.print("[dim]'fits here': adapter, precision and context of the plan at the model's default context "
              "(`wgllm plan NAME:QUANT` says why); 'runs': runnable by this version.[/dim]")
    from wgllm import hub

    err.print(f"[dim]fetchable by name (`wgllm pull NAME`): {_fetchable_text(hub.known_models())}[/dim]",
              highlight=False)
    return 0


COMMANDS = {"run": cmd_run, "chat": cmd_chat, "serve": cmd_serve, "pull": cmd_pull, "models": cmd_models, "devices": cmd_devices,
            "plan": cmd_plan, "doctor": cmd_doctor}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wgllm` command."""
    args = build_parser().parse_args(argv)
    try:
        check_options(args)
        return COMMANDS[args.command](args)
    except WgllmError as exc:
        if os.environ.get("WGLLM_DEBUG"):
            raise
        err.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
