"""`import wgllm` sets XDG_RUNTIME_DIR when it is unset, so the Vulkan loader does not complain."""

import os
import stat
import subprocess
import sys

import wgllm


def test_engine_without_xdg_runtime_dir_prints_no_warning(tiny_path, device, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)
    code = ("import os, wgllm; e = wgllm.Engine(%r, ctx=64); "
            "print(os.environ['XDG_RUNTIME_DIR'])" % str(tiny_path))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "XDG_RUNTIME_DIR" not in res.stderr, res.stderr
    runtime = res.stdout.strip().splitlines()[-1]
    assert runtime == str(tmp_path / f"wgllm-runtime-{os.getuid()}")
    assert stat.S_IMODE(os.stat(runtime).st_mode) == 0o700


def test_a_set_xdg_runtime_dir_is_kept(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", "import os, wgllm; print(os.environ['XDG_RUNTIME_DIR'])"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == str(tmp_path)


def test_default_runtime_dir_is_private(tmp_path, monkeypatch):
    monkeypatch.setattr(wgllm.tempfile, "gettempdir", lambda: str(tmp_path))
    path = wgllm.default_runtime_dir()
    assert path == str(tmp_path / f"wgllm-runtime-{os.getuid()}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert wgllm.default_runtime_dir() == path  # reused
    os.chmod(path, 0o777)  # someone else could write there: not private any more
    assert wgllm.default_runtime_dir() == str(tmp_path)
