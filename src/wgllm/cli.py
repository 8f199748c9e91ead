"""The `wgllm` command line: run, chat, pull, models, devices.

A user's mistake (a missing model, a bad option, no adapter) prints a one
paragraph message and exits with status 1, never a traceback; set
WGLLM_DEBUG=1 to see tracebacks anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rich.console import Console
from rich.table import Table

from wgllm.errors import WgllmError

err = Console(stderr=True)
out = Console()


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wgllm", description="Run GGUF language models on any GPU through WebGPU.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="answer one prompt and exit")
    p.add_argument("prompt", help="the prompt (use - to read it from stdin)")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    _gen_options(p)
    p = sub.add_parser("chat", help="interactive chat (/reset, /exit)")
    _gen_options(p)
    p = sub.add_parser("pull", help="fetch a model into the cache")
    p.add_argument("name", nargs="?", default=None, help="model name (default: the default model)")
    sub.add_parser("models", help="list models in the cache")
    p = sub.add_parser("devices", help="list WebGPU adapters")
    p.add_argument("--json", action="store_true")
    return parser


def _sampling(args):
    from wgllm.runtime.sampler import SamplingParams

    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repeat_penalty=args.repeat_penalty, seed=args.seed)


def _engine(args):
    from wgllm.runtime.engine import Engine

    with err.status("Loading model…"):
        return Engine(args.model, device=args.device, ctx=args.ctx, precision=args.precision)


def _messages(args, history: list[dict]) -> list[dict]:
    sys_msg = [{"role": "system", "content": args.system}] if args.system else []
    return sys_msg + history


def _stream(engine, prompt_ids, args) -> str:
    """Generate, printing text as it comes; returns the whole text."""
    dec = engine.tokenizer.stream_decoder()
    pieces = []
    for tok in engine.generate(prompt_ids, max_tokens=args.max_tokens, sampling=_sampling(args)):
        piece = dec.add(tok)
        if piece:
            pieces.append(piece)
            out.out(piece, end="", highlight=False)
            out.file.flush()
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
        f"[dim]{engine.adapter.summary} · {engine.precision} · prompt {s.prompt_tokens} tok "
        f"({s.prefill_tok_s:.1f} tok/s) · generated {s.completion_tokens} tok ({s.decode_tok_s:.1f} tok/s) · "
        f"TTFT {s.ttft_s * 1000:.0f} ms · {s.finish_reason}[/dim]"
    )


def cmd_run(args) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    engine = _engine(args)
    if args.raw:
        ids = engine.tokenizer.encode(prompt, add_special=True)
    else:
        ids = engine.chat_prompt(_messages(args, [{"role": "user", "content": prompt}]))
    _stream(engine, ids, args)
    return 0


def cmd_chat(args) -> int:
    engine = _engine(args)
    err.print(f"[dim]{engine.path.name} on {engine.adapter.summary} ({engine.precision}). "
              f"/reset clears the conversation, /exit quits.[/dim]")
    history: list[dict] = []
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            out.out("")
            return 0
        cmd = line.strip()
        if cmd in ("/exit", "/quit", "/bye"):
            return 0
        if cmd == "/reset":
            history = []
            engine.reset()
            err.print("[dim]conversation cleared[/dim]")
            continue
        if not cmd:
            continue
        history.append({"role": "user", "content": line})
        try:
            reply = _stream(engine, engine.chat_prompt(_messages(args, history)), args)
        except KeyboardInterrupt:
            out.out("")
            reply = ""
        except WgllmError as exc:
            if not exc.recoverable:
                raise
            err.print(f"[red]{exc.message}[/red]")
            history.pop()
            continue
        history.append({"role": "assistant", "content": reply})


def cmd_pull(args) -> int:
    from wgllm import hub

    path = hub.pull(args.name or hub.DEFAULT_MODEL)
    out.print(f"{path}")
    return 0


def cmd_models(args) -> int:
    from wgllm import hub

    table = Table("name", "size", "architecture", "quantization", "path")
    for m in hub.list_local():
        table.add_row(m.name, f"{m.size / 2**20:.1f} MiB", m.architecture or "?", m.quantization or "?", str(m.path))
    out.print(table)
    known = ", ".join(e.name for e in hub.known_models())
    err.print(f"[dim]cache: {hub.cache_dir()} · fetchable by name: {known}[/dim]")
    return 0


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


COMMANDS = {"run": cmd_run, "chat": cmd_chat, "pull": cmd_pull, "models": cmd_models, "devices": cmd_devices}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wgllm` command."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    args = build_parser().parse_args(argv)
    try:
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
