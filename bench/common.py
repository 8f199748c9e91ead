"""Shared by the bench scripts: the commit a figure was measured at."""

from __future__ import annotations

import os
import subprocess


def commit() -> str:
    """$WGLLM_COMMIT, else the checkout's short HEAD, else "unknown"."""
    if os.environ.get("WGLLM_COMMIT"):
        return os.environ["WGLLM_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except Exception:  # noqa: BLE001 - no git, not a checkout
        return "unknown"
