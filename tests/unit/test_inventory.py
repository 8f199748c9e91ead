"""Adapter memory budgets without a GPU: fake NVML, a fake sysfs tree, fake psutil, caps."""

import sys
import types
from collections import namedtuple

import pytest

from wgllm.errors import RequestError
from wgllm.gpu import inventory as inv
from wgllm.gpu.discovery import AdapterInfo
from wgllm.gpu.inventory import GiB, MiB, inventory, parse_caps, parse_size

H100, RTX = 0x2330, 0x2684


def adapter(index=0, name="NVIDIA H100 80GB HBM3", kind="discrete", backend="Vulkan", vendor_id=0x10DE,
            device_id=H100) -> AdapterInfo:
    return AdapterInfo(index=index, name=name, kind=kind, backend=backend, vendor="", vendor_id=vendor_id,
                       device_id=device_id, shader_f16=True, max_buffer_size=4 << 30,
                       max_storage_binding=(2 << 30) - 4, max_workgroup_storage=49152, summary=name)


def fake_nvml(gpus, *, init_error=None):
    """A pynvml stand-in: gpus = [(name, pci device id, total, free)]."""
    m = types.ModuleType("pynvml")
    m.calls = []

    class NVMLError(Exception):
        pass

    def init():
        m.calls.append("init")
        if init_error:
            raise NVMLError(init_error)

    m.NVMLError = NVMLError
    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: gpus[h][0].encode()  # old pynvml: bytes
    m.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(
        pciDeviceId=(gpus[h][1] << 16) | 0x10DE, busId=f"00000000:{h + 1:02x}:00.0".encode())
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=gpus[h][2], free=gpus[h][3],
                                                                used=gpus[h][2] - gpus[h][3])
    return m


@pytest.fixture(autouse=True)
def no_env_cap(monkeypatch):
    monkeypatch.delenv(inv.ENV_VAR, raising=False)


@pytest.fixture
def two_gpus(monkeypatch):
    m = fake_nvml([("NVIDIA H100 80GB HBM3", H100, 80 * GiB, 70 * GiB),
                   ("NVIDIA GeForce RTX 4090", RTX, 24 * GiB, 20 * GiB)])
    monkeypatch.setitem(sys.modules, "pynvml", m)
    return m


def test_nvml_matched_by_device_id(two_gpus):
    a, b = inventory([adapter(0, "NVIDIA GeForce RTX 4090", device_id=RTX), adapter(1)])
    assert (a.total, a.free, a.source, a.shared) == (24 * GiB, 20 * GiB, "nvml", False)
    assert a.budget == 20 * GiB - int(0.05 * 24 * GiB)  # free less 5% of total (> 512 MiB)
    assert b.budget == 70 * GiB - 4 * GiB
    assert a.physical != b.physical and b.physical.startswith("nvml:")
    assert two_gpus.calls == ["init", "shutdown"]  # NVML queried once for every adapter


def test_nvml_matched_by_name_when_id_missing(two_gpus):
    # e.g. an OpenGL adapter without a PCI device id, whose name has a suffix
    (b,) = inventory([adapter(0, "NVIDIA H100 80GB HBM3/PCIe/SSE2", backend="OpenGL", device_id=0)])
    assert b.source == "nvml" and b.free == 70 * GiB


def test_same_gpu_two_backends_share_physical(two_gpus):
    vk, gl = inventory([adapter(0), adapter(1, "NVIDIA H100 80GB HBM3/PCIe/SSE2", backend="OpenGL", device_id=0)])
    assert vk.physical == gl.physical and vk.budget == gl.budget


def test_ambiguous_ids_resolved_by_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([("NVIDIA A", 0x1111, 16 * GiB, 10 * GiB),
                                                          ("NVIDIA B", 0x1111, 32 * GiB, 30 * GiB)]))
    (b,) = inventory([adapter(0, "NVIDIA B", device_id=0x1111)])
    assert b.free == 30 * GiB and "identical" not in b.note


def test_identical_gpus_take_least_free(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([("NVIDIA H100 80GB HBM3", H100, 80 * GiB, 70 * GiB),
                                                          ("NVIDIA H100 80GB HBM3", H100, 80 * GiB, 40 * GiB)]))
    a, b = inventory([adapter(0), adapter(1)])
    assert a.free == b.free == 40 * GiB and "identical" in a.note


def test_small_gpu_margin_is_512_mib(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([("NVIDIA GeForce GTX 1050", 0x1C81, 2 * GiB, GiB)]))
    (b,) = inventory([adapter(0, "NVIDIA GeForce GTX 1050", device_id=0x1C81)])
    assert b.budget == GiB - 512 * MiB


def test_nvml_missing_is_unknown(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    (b,) = inventory([adapter()])
    assert b.source == "unknown" and b.budget is None and b.total is None
    assert "nvidia-ml-py" in b.note and "unknown" in b.note
    assert b.planning_budget == inv.UNKNOWN_DEFAULT_BUDGET


def test_nvml_init_failure_is_unknown(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], init_error="Driver Not Loaded"))
    (b,) = inventory([adapter()])
    assert b.source == "unknown" and "Driver Not Loaded" in b.note


def test_nvml_not_asked_without_nvidia(monkeypatch, tmp_path):
    m = fake_nvml([], init_error="should not be called")
    monkeypatch.setitem(sys.modules, "pynvml", m)
    inventory([adapter(0, "Intel(R) Arc(tm) A770", vendor_id=0x8086, device_id=0x56A0)], drm_root=tmp_path)
    assert m.calls == []


# --- AMD sysfs ---------------------------------------------------------------------


def drm_card(root, name, vendor, device, total=None, used=None):
    d = root / name / "device"
    d.mkdir(parents=True)
    (d / "vendor").write_text(f"{vendor:#06x}\n")
    (d / "device").write_text(f"{device:#06x}\n")
    if total is not None:
        (d / "mem_info_vram_total").write_text(f"{total}\n")
        (d / "mem_info_vram_used").write_text(f"{used}\n")


def test_amd_sysfs(tmp_path):
    drm_card(tmp_path, "card0", 0x8086, 0x56A0)  # an Intel card: skipped
    drm_card(tmp_path, "card1", 0x1002, 0x744C, 24 * GiB, 4 * GiB)
    drm_card(tmp_path, "card1-DP-1", 0x1002, 0x744C, 1, 0)  # a connector, not a card
    (b,) = inventory([adapter(0, "AMD Radeon RX 7900 XTX (RADV NAVI31)", vendor_id=0x1002, device_id=0x744C)],
                     drm_root=tmp_path)
    assert (b.source, b.total, b.free) == ("sysfs", 24 * GiB, 20 * GiB)
    assert b.budget == 20 * GiB - int(0.05 * 24 * GiB)
    assert b.physical.endswith("card1")


def test_amd_without_sysfs_is_unknown(tmp_path):
    (b,) = inventory([adapter(0, "AMD Radeon RX 7900 XTX", vendor_id=0x1002, device_id=0x744C)], drm_root=tmp_path)
    assert b.source == "unknown" and b.budget is None


# --- shared memory (integrated GPUs, CPU adapters) ----------------------------------

VM = namedtuple("VM", "total available")


@pytest.mark.parametrize("total,avail,margin", [(64 * GiB, 40 * GiB, int(6.4 * GiB)), (8 * GiB, 5 * GiB, GiB)])
@pytest.mark.parametrize("kind", ["cpu", "integrated"])
def test_shared_memory_from_psutil(monkeypatch, kind, total, avail, margin):
    monkeypatch.setattr(inv.psutil, "virtual_memory", lambda: VM(total, avail))
    (b,) = inventory([adapter(0, "llvmpipe", kind=kind, vendor_id=0x10005, device_id=0)])
    assert (b.source, b.shared, b.total, b.free) == ("system-ram", True, total, avail)
    assert b.budget == avail - margin
    assert ("OOM killer" in b.note) == (kind == "cpu")


def test_integrated_nvidia_uses_system_ram(monkeypatch, two_gpus):
    monkeypatch.setattr(inv.psutil, "virtual_memory", lambda: VM(16 * GiB, 10 * GiB))
    (b,) = inventory([adapter(0, "NVIDIA Tegra Orin", kind="integrated", device_id=0)])
    assert b.source == "system-ram" and two_gpus.calls == []


def test_shared_budget_never_negative(monkeypatch):
    monkeypatch.setattr(inv.psutil, "virtual_memory", lambda: VM(4 * GiB, 512 * MiB))
    (b,) = inventory([adapter(0, "llvmpipe", kind="cpu", vendor_id=0x10005, device_id=0)])
    assert b.budget == 0


def test_unknown_vendor(tmp_path):
    (b,) = inventory([adapter(0, "Intel(R) Arc(tm) A770", vendor_id=0x8086, device_id=0x56A0)], drm_root=tmp_path)
    assert (b.source, b.budget, b.total, b.free) == ("unknown", None, None, None)
    assert "unknown" in b.note and "--gpu-memory" in b.note
    assert b.planning_budget == 2 * GiB


# --- caps ------------------------------------------------------------------------------


def test_cap_lowers_measured_budget(two_gpus):
    (b,) = inventory([adapter()], caps="4GiB")
    assert (b.budget, b.source, b.cap) == (4 * GiB, "user-cap", 4 * GiB)
    assert b.free == 70 * GiB and "nvml" in b.note  # what was measured stays visible


def test_cap_above_measured_budget_is_not_used(two_gpus):
    (b,) = inventory([adapter(0, "NVIDIA GeForce RTX 4090", device_id=RTX)], caps="100GiB")
    assert b.source == "nvml" and b.budget < 20 * GiB and b.cap == 100 * GiB and "above" in b.note


def test_cap_replaces_unknown_budget(tmp_path):
    (b,) = inventory([adapter(0, "Intel Arc", vendor_id=0x8086, device_id=1)], caps="12GiB", drm_root=tmp_path)
    assert (b.budget, b.source) == (12 * GiB, "user-cap") and b.planning_budget == 12 * GiB


def test_caps_per_index(two_gpus):
    a, b = inventory([adapter(0, "NVIDIA GeForce RTX 4090", device_id=RTX), adapter(1)], caps="0=4GiB,1=8GiB")
    assert (a.budget, b.budget) == (4 * GiB, 8 * GiB)
    a, b = inventory([adapter(0, "NVIDIA GeForce RTX 4090", device_id=RTX), adapter(1)], caps={1: 2 * GiB})
    assert a.source == "nvml" and b.budget == 2 * GiB


def test_caps_from_env(monkeypatch, two_gpus):
    monkeypatch.setenv(inv.ENV_VAR, "1=3G")
    a, b = inventory([adapter(0, "NVIDIA GeForce RTX 4090", device_id=RTX), adapter(1)])
    assert a.source == "nvml" and b.budget == 3 * GiB
    (c,) = inventory([adapter()], caps="5GiB")  # an explicit cap wins over the environment
    assert c.budget == 5 * GiB
    monkeypatch.setenv(inv.ENV_VAR, "lots")
    with pytest.raises(RequestError, match="not a memory size"):
        inventory([adapter()])


def test_parse_caps():
    assert parse_caps(None) == parse_caps("") == parse_caps("  ") == {}
    assert parse_caps("4GiB") == {None: 4 * GiB}
    assert parse_caps("0=4GiB,1=8GiB") == {0: 4 * GiB, 1: 8 * GiB}
    assert parse_caps("6G, 1=8G") == {None: 6 * GiB, 1: 8 * GiB}
    assert parse_caps({0: "1G", "1": 5}) == {0: GiB, 1: 5}
    assert parse_caps(1024) == {None: 1024}
    for bad in ("x=4G", "0=", "0=4G,,", "-1=4G", "4G=0", {"a": 5}):
        with pytest.raises(RequestError):
            parse_caps(bad)


@pytest.mark.parametrize("text,n", [
    ("4GiB", 4 * GiB), ("4gib", 4 * GiB), ("4 GiB", 4 * GiB), ("512MiB", 512 * MiB), ("512M", 512 * MiB),
    ("1.5G", 3 * GiB // 2), ("4096", 4096), ("4096B", 4096), ("100k", 102400), ("2T", 2 << 40),
    ("512MB", 512_000_000), ("8GB", 8_000_000_000), ("1.5GB", 1_500_000_000), (" 3g ", 3 * GiB), (".5G", GiB // 2),
    (123, 123),
])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "junk", "G", "4iB", "4GiBs", "-1G", "0", "0G", "1.5", "4 G i B", "1e9",
                                  "nan", 0, -5])
def test_parse_size_rejects(text):
    with pytest.raises(RequestError) as info:
        parse_size(text)
    assert "memory size" in info.value.message
