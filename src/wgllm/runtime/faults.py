"""Fault injection: make the GPU fail on purpose, to test recovery.

A spec is a comma-separated list of `KIND@POINT[:ARG][#PART][xN]`:

  KIND   lost  the device is really destroyed (`device.destroy()`): every later
               call on it fails as a lost device does.
         oom   a real failing allocation: a buffer larger than the adapter's
               max-buffer-size is requested from the driver, which refuses it.
         hang  the next read-back waits and never sees its work complete, so
               the watchdog fires after its timeout. (Simulated at the wait: a
               real GPU hang cannot be produced safely on demand.)
         kill, segv, stop  the worker process that hosts the engine gets SIGKILL,
               SIGSEGV (a native crash) or SIGSTOP (wedged: alive, silent); only in a
               supervised worker (see wgllm.runtime.supervisor), where the
               supervisor starts a new one.
  POINT  load         while uploading the weights (at a weight buffer's allocation)
         prefill      before the prompt's last prefill pass is read back
         decode:N     at the N-th decoded token of a generation (1-based)
         submit:N     at the N-th submission since the engine was made
         alloc:LABEL  when a buffer labelled LABEL is allocated (kv, weights,
                      act, logits, tokens, staging, ...)
  #PART  only on the device of that part of a split model (0 = the first; without
         it the first device to reach the point: part 0 for load, prefill, decode)
  xN     fire N times (default once); e.g. `lost@loadx3` keeps the device
         failing during three loads in a row.

Examples: `lost@decode:17`, `oom@alloc:kv`, `hang@submit:5`, `lost@prefill`,
`lost@load`, `lost@decode:3#1` (the second part's device), `kill@decode:5`, `segv@prefill`. Set it with the `faults=` argument of Engine, `--faults` on the
CLI, or the WGLLM_FAULTS environment variable.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass

from wgllm.errors import RequestError

ENV = "WGLLM_FAULTS"
KINDS = ("lost", "oom", "hang", "kill", "segv", "stop")
PROCESS_KINDS = {"kill": signal.SIGKILL, "segv": signal.SIGSEGV, "stop": signal.SIGSTOP}  # fire at the process
POINTS = ("load", "prefill", "decode", "submit", "alloc")
_ITEM = re.compile(r"^(?P<kind>[a-z]+)@(?P<point>[a-z]+)(?::(?P<arg>[A-Za-z0-9_.-]+?))?(?:#(?P<part>\d+))?"
                   r"(?:x(?P<times>\d+))?$")


@dataclass
class Fault:
    """One planned fault: `kind` at `point` (with `arg`, on part `part`), `times` more times."""

    kind: str
    point: str
    arg: str | None = None
    times: int = 1
    part: int | None = None

    def matches(self, point: str, arg, part: int = 0, named_only: bool = False) -> bool:
        if self.times <= 0 or point != self.point or (self.part is not None and part != self.part):
            return False
        if named_only and self.part is None:
            return False
        return self.arg is None or str(arg) == self.arg


def parse(spec: str | None) -> list[Fault]:
    """Faults of a spec string (see module doc); RequestError naming a bad item."""
    faults = []
    for item in (spec or "").replace(" ", "").split(","):
        if not item:
            continue
        m = _ITEM.match(item)
        if not m or m["kind"] not in KINDS or m["point"] not in POINTS:
            raise RequestError(
                f"Bad fault '{item}': write KIND@POINT[:ARG][#PART][xN] with KIND one of {', '.join(KINDS)} and "
                f"POINT one of load, prefill, decode:N, submit:N, alloc:LABEL (e.g. lost@decode:17).")
        point, arg = m["point"], m["arg"]
        if point in ("decode", "submit") and not (arg and arg.isdigit() and int(arg) > 0):
            raise RequestError(f"Bad fault '{item}': {point} needs a positive number, e.g. {m['kind']}@{point}:5.")
        if point == "alloc" and not arg:
            raise RequestError(f"Bad fault '{item}': alloc needs a buffer label, e.g. oom@alloc:kv.")
        part = int(m["part"]) if m["part"] is not None else None
        faults.append(Fault(m["kind"], point, arg, int(m["times"] or 1), part))
    return faults


class FaultInjector:
    """Fires planned faults at the engine's and device's hook points; `fired` lists what fired."""

    def __init__(self, spec: str | list[Fault] | None = None, *, process: bool = False, on_fire=None):
        self.faults = parse(spec) if isinstance(spec, (str, type(None))) else list(spec)
        self.process = process  # whether process faults may fire (a supervised worker)
        self.on_fire = on_fire  # called with a fault's index in `faults` just before it fires
        if not process and any(f.kind in PROCESS_KINDS for f in self.faults):
            bad = next(f.kind for f in self.faults if f.kind in PROCESS_KINDS)
            raise RequestError(
                f"The fault '{bad}' signals the worker process that hosts the engine, and this engine runs "
                f"in-process: use it with the supervised worker (the default of wgllm.Engine and the CLI; "
                f"not with --in-process or wgllm.runtime.engine.Engine).")
        self.fired: list[str] = []
        self.submits = 0
        self._hang_pending = None  # the device whose next read-back hangs

    @classmethod
    def from_env(cls, spec: str | None = None) -> "FaultInjector":
        """The injector for `spec`, or for $WGLLM_FAULTS when spec is None."""
        return cls(os.environ.get(ENV, "") if spec is None else spec)

    def __bool__(self) -> bool:
        return any(f.times > 0 for f in self.faults) or self._hang_pending is not None

    def at(self, dev, point: str, arg=None, named_only: bool = False) -> None:
        """Hook: the engine or device reached `point`; fire the first matching fault on `dev` (the
        device of part `dev.part` of a split model; `named_only`: only faults naming that part)."""
        if point == "submit":
            self.submits += 1
            arg = self.submits
        part = getattr(dev, "part", 0)
        for i, f in enumerate(self.faults):
            if f.matches(point, arg, part, named_only):
                f.times -= 1
                self.fired.append(f"{f.kind}@{point}" + (f":{arg}" if arg is not None else "")
                                  + (f"#{part}" if f.part is not None else ""))
                if self.on_fire is not None:
                    self.on_fire(i)
                self._fire(f.kind, dev)
                return

    def take_hang(self, dev=None) -> bool:
        """Whether a hang was injected on `dev` since its last read-back (the watchdog then times
        out); None: on any device."""
        if self._hang_pending is None or (dev is not None and self._hang_pending is not dev):
            return False
        self._hang_pending = None
        return True

    def _fire(self, kind: str, dev) -> None:
        if kind in PROCESS_KINDS:
            os.kill(os.getpid(), PROCESS_KINDS[kind])
        elif kind == "lost":
            dev.lose()
        elif kind == "oom":
            dev.refused_allocation()
        else:
            self._hang_pending = dev
