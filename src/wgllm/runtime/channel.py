"""The local channel between a supervisor and its worker process: pickled messages over a
Unix socket pair (no network port).

A message is a tuple whose first item names it. Objects both sides have their own copy of
(the tokenizer of the loaded model) cross as references (pickle's persistent ids), so a
sampler with a grammar mask pickles small and unpickles onto the worker's tokenizer.
Exceptions cross as (class, message, attributes) and come out as the same typed error
(`pack_error` / `unpack_error`): pickling an exception calls its constructor with
`args`, which wgllm's errors with several arguments do not take.
"""

from __future__ import annotations

import importlib
import io
import pickle
import select
import socket
import threading
from multiprocessing.connection import Connection
from typing import Any

from wgllm import errors


class ChannelClosed(Exception):
    """The other side is gone (its process ended, or it closed the channel)."""


class Channel:
    """One end of a socket pair. `shared`: {name: object} sent as references to the peer's object
    of the same name. send is thread-safe (a worker's heartbeat thread sends beside its main one);
    one thread receives."""

    def __init__(self, sock: socket.socket, shared: dict[str, Any] | None = None):
        self._conn = Connection(sock.detach())
        self._poller = select.poll()  # one, registered once: waiting costs one system call per message
        self._poller.register(self._conn.fileno(), select.POLLIN)
        self._send_lock = threading.Lock()
        self.shared = dict(shared or {})

    @classmethod
    def pair(cls) -> tuple[socket.socket, socket.socket]:
        """A connected pair of sockets (parent's end, child's end)."""
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def fileno(self) -> int:
        return self._conn.fileno()

    def dumps(self, obj: Any) -> bytes:
        return dumps(obj, self.shared)

    def loads(self, data: bytes) -> Any:
        return loads(data, self.shared)

    def send(self, *msg: Any) -> None:
        """Send one message (ChannelClosed when the peer is gone)."""
        data = self.dumps(msg)
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except (OSError, EOFError, ValueError) as exc:
            raise ChannelClosed(str(exc)) from None

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or the end of the channel) is there to read, waiting up to `timeout`."""
        try:
            return bool(self._poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
        except (OSError, ValueError):
            return True  # recv will say it is closed

    def recv(self) -> tuple:
        """The next message (blocks; ChannelClosed when the peer is gone)."""
        try:
            data = self._conn.recv_bytes()
        except (OSError, EOFError, ValueError) as exc:
            raise ChannelClosed(str(exc) or "end of channel") from None
        return self.loads(data)

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass


def dumps(obj: Any, shared: dict[str, Any]) -> bytes:
    """`obj` pickled with the objects of `shared` as references (by name)."""
    ids = {id(v): k for k, v in shared.items()}
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    p.persistent_id = lambda o: ids.get(id(o))
    p.dump(obj)
    return buf.getvalue()


def loads(data: bytes, shared: dict[str, Any]) -> Any:
    """What `dumps` pickled, its references resolved to the objects of `shared`."""
    u = pickle.Unpickler(io.BytesIO(data))
    u.persistent_load = shared.__getitem__
    return u.load()


def pack_error(exc: BaseException) -> tuple[str, str, dict]:
    """An exception as (module:class, message, attributes that pickle) to cross the channel."""
    attrs = {}
    for k, v in vars(exc).items():
        try:
            pickle.dumps(v)
        except Exception:  # noqa: BLE001 - an attribute that cannot cross is left behind
            continue
        attrs[k] = v
    cls = type(exc)
    return f"{cls.__module__}:{cls.__qualname__}", str(exc), attrs


def unpack_error(packed: tuple[str, str, dict]) -> BaseException:
    """The exception `pack_error` packed: the same class (built without its constructor), message
    and attributes; a class that cannot be found comes back as a WgllmError with the message."""
    name, message, attrs = packed
    mod, _, qual = name.partition(":")
    try:
        cls = importlib.import_module(mod)
        for part in qual.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(name)
    except Exception:  # noqa: BLE001
        return errors.WgllmError(message)
    exc = cls.__new__(cls)
    exc.args = (message,)
    for k, v in attrs.items():
        setattr(exc, k, v)
    return exc
