"""`wgllm doctor` and `wgllm models --catalog`: this machine at a glance, as data.

`diagnose()` gathers the adapters with their memory budgets, whether a
Vulkan loader and drivers are installed, which catalog models fit on which
adapter at their default context, and known hazards (only a CPU adapter,
shader-f16 missing, tiny binding limits, unknown memory). `catalog_rows()`
gives each catalog model and quantization its memory need per context and
whether it fits here. The CLI renders both as rich tables or JSON; nothing
here prints, and `wgpu` is only touched through `discovery.list_adapters`.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import platform
from pathlib import Path

from wgllm.errors import ModelTooLargeError, NoAdapterError
from wgllm.gpu.inventory import AdapterBudget, Caps, inventory
from wgllm.plan import catalog
from wgllm.plan.planner import (DEFAULT_CTX, check, default_ctx, fmt_bytes, make_plan, precisions, runnable,
                                select_adapters, usable)

ICD_DIRS = ("/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d", "/etc/vulkan/icd.d",
            "~/.local/share/vulkan/icd.d")
INSTALL_HINT = ("install the Vulkan loader and a driver: `sudo apt-get install libvulkan1 mesa-vulkan-drivers` "
                "(Debian/Ubuntu; Mesa covers AMD, Intel and the lavapipe CPU adapter), `sudo dnf install "
                "vulkan-loader mesa-vulkan-drivers` (Fedora); NVIDIA's proprietary driver brings its own")
SMALL_BINDING = 256 << 20  # a max-storage-buffer-binding-size below this is a hazard
CATALOG_CONTEXTS = (2048, 8192, 32768)


def vulkan_status(icd_dirs=ICD_DIRS) -> dict:
    """Whether the Vulkan loader and driver manifests (ICDs) are installed, with an install hint.

    On macOS (Metal) and Windows (D3D12) Vulkan is optional, so `ok` is true there."""
    system = platform.system()
    loader = ctypes.util.find_library("vulkan") or ctypes.util.find_library("vulkan-1")
    drivers = _icd_manifests(icd_dirs) if system == "Linux" else []
    needed = system == "Linux"
    ok = not needed or bool(loader and drivers)
    return {"platform": system, "loader": loader, "drivers": drivers, "needed": needed, "ok": ok,
            "hint": "" if ok else INSTALL_HINT}


def _icd_manifests(dirs) -> list[str]:
    """Driver names from Vulkan ICD manifests (file stems), including VK_ICD_FILENAMES / VK_DRIVER_FILES."""
    files = [Path(f) for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES")
             for f in os.environ.get(var, "").split(os.pathsep) if f]
    for d in dirs:
        root = Path(d).expanduser()
        if root.is_dir():
            files += sorted(root.glob("*.json"))
    return [f"{f.stem} ({_icd_library(f)})" for f in files if f.is_file()]


def _icd_library(path: Path) -> str:
    try:
        return str(json.loads(path.read_text())["ICD"]["library_path"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable manifest"


def hazards(budgets: list[AdapterBudget], vulkan: dict, no_adapter: str = "") -> list[str]:
    """Known problems of this machine, one plain sentence each."""
    out = []
    if no_adapter:
        out.append(no_adapter)
    if vulkan["needed"] and not vulkan["loader"]:
        out.append(f"The Vulkan loader (libvulkan.so.1) is missing: {INSTALL_HINT}.")
    elif vulkan["needed"] and not vulkan["drivers"]:
        out.append(f"No Vulkan driver manifest was found in {', '.join(ICD_DIRS)}: {INSTALL_HINT}.")
    if budgets and all(b.kind == "cpu" for b in budgets):
        out.append("Only a CPU (software) adapter is available: models run on the CPU, tens of times slower "
                   "than on a GPU. Install your GPU's Vulkan driver to use it.")
    if budgets and all(b.backend == "OpenGL" for b in budgets if b.kind != "cpu") and \
            any(b.kind != "cpu" for b in budgets):
        out.append("GPUs are reachable only through OpenGL (no shader-f16, fewer features): install their "
                   "Vulkan driver.")
    for b in budgets:
        out += _adapter_hazards(b)
    return out


def _adapter_hazards(b: AdapterBudget) -> list[str]:
    out = []
    if b.kind != "cpu" and b.backend != "OpenGL" and not b.shader_f16:
        out.append(f"{b.summary} lacks shader-f16: activations and the KV cache run in f32, twice the memory.")
    if b.max_storage_binding < SMALL_BINDING:
        phi = catalog.CATALOG["phi-3.5-mini"].config
        tokens = b.max_storage_binding // (phi.n_kv_heads * phi.head_dim * 4)
        out.append(f"{b.summary} binds at most {fmt_bytes(b.max_storage_binding)} per storage buffer: weights "
                   f"are split into many chunks, and one layer's K or V cache must fit in one binding (e.g. "
                   f"Phi-3.5-mini in f32 holds at most {tokens:,} tokens).")
    if b.source == "unknown":
        out.append(f"{b.summary}: its memory is unknown, so plans assume {fmt_bytes(b.planning_budget)}; "
                   f"pass --gpu-memory (or WGLLM_GPU_MEMORY) with its free memory.")
    return out


def catalog_fits(budgets: list[AdapterBudget]) -> list[dict]:
    """Per catalog model (default quantization, default context): whether it fits each adapter,
    and when none holds it alone, the split over adapters that does (`split`: the --split spec)."""
    rows = []
    for e in catalog.entries():
        lay = catalog.catalog_layout(e.name)
        n_ctx = default_ctx(lay)
        fits = [_fit_on(lay, n_ctx, b, budgets) for b in budgets]
        split = _split_here(lay, n_ctx, budgets) if budgets and not any(f["fits"] for f in fits) else None
        rows.append({"model": e.title, "name": e.name, "quantization": lay.quantization, "n_ctx": n_ctx,
                     "weights": lay.weight_bytes, "runnable": runnable(lay)[0], "adapters": fits, "split": split})
    return rows


def _split_here(lay, n_ctx: int, budgets: list[AdapterBudget]) -> str | None:
    """The --split spec of the auto plan at `n_ctx` when it splits the model over adapters, else None."""
    try:
        p = make_plan(lay, budgets, ctx=n_ctx)
    except ModelTooLargeError:
        return None
    if not p.is_split:
        return None
    return ",".join(f"{q.adapter.index}:{q.layers[0]}-{q.layers[1] - 1}" for q in p.parts)


def _fit_on(lay, n_ctx: int, b: AdapterBudget, budgets: list[AdapterBudget]) -> dict:
    try:
        p = make_plan(lay, budgets, ctx=n_ctx, policy=b.index)
        return {"index": b.index, "fits": True, "precision": p.precision, "need": p.estimate.total,
                "usable": usable(b), "why": ""}
    except ModelTooLargeError as exc:
        need = exc.needs[0][1] if exc.needs else 0
        return {"index": b.index, "fits": False, "precision": "", "need": need, "usable": usable(b),
                "why": exc.message}


def diagnose(caps: Caps = None) -> dict:
    """Everything `wgllm doctor` shows, JSON-ready."""
    from wgllm.gpu.discovery import list_adapters

    no_adapter = ""
    try:
        infos = list_adapters()
    except NoAdapterError as exc:
        infos, no_adapter = [], exc.message
    if not infos and not no_adapter:
        no_adapter = NoAdapterError().message
    budgets = inventory(infos, caps=caps)
    vulkan = vulkan_status()
    return {
        "adapters": [dict(b.as_dict(), usable=usable(b), summary=b.summary) for b in budgets],
        "vulkan": vulkan,
        "catalog": catalog_fits(budgets),
        "hazards": hazards(budgets, vulkan, no_adapter),
        "ok": bool(budgets),
    }


def catalog_rows(budgets: list[AdapterBudget], policy="auto", contexts=CATALOG_CONTEXTS) -> list[dict]:
    """Every catalog model and quantization: weights, need per context (at the precision and limits
    of the first adapter `policy` prefers; f16 and no limits without adapters), and whether it fits
    here at its default context (`fits`: the plan's adapter index and precision, or None)."""
    top = select_adapters(budgets, policy)[0][0] if budgets else None
    rows = []
    for e in catalog.entries():
        for q in e.quants:
            lay = catalog.catalog_layout(e.name, q)
            act = precisions("auto", top)[0] if top else "f16"
            need = {c: _need(lay, c, act, top) for c in contexts if c <= lay.n_ctx_train}
            rows.append({"model": e.title, "name": e.name, "arch": e.arch, "quantization": q,
                         "weights": lay.weight_bytes, "precision": act, "need": need,
                         "runnable": runnable(lay)[0], "default_ctx": min(lay.n_ctx_train, DEFAULT_CTX),
                         "fits": _fits_here(lay, budgets, policy)})
    return rows


def _need(lay, n_ctx: int, act: str, top: AdapterBudget | None) -> int:
    if top is None:
        from wgllm.plan.memory import estimate

        return estimate(lay, n_ctx=n_ctx, act=act).total
    return check(lay, top, act, n_ctx).need


def _fits_here(lay, budgets: list[AdapterBudget], policy) -> dict | None:
    if not budgets:
        return None
    try:
        p = make_plan(lay, budgets, ctx=default_ctx(lay), policy=policy)
    except ModelTooLargeError:
        return None
    return {"index": p.adapter.index, "adapter": p.adapter.summary, "precision": p.precision, "n_ctx": p.n_ctx}
