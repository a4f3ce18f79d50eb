"""The CPU allocator policies: what glibc does under each, the user's settings, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nasmed.allocator import configure_cpu_allocator, user_malloc_settings
from nasmed.errors import ConfigError

GLIBC = sys.platform.startswith("linux")

# A child process (malloc settings are process-wide) applies a policy, then allocates, touches
# and frees 64 MiB ten times with glibc's malloc and counts the page faults of the last nine.
_CYCLES = """
import ctypes, json, resource, sys
from nasmed.allocator import configure_cpu_allocator
applied = all([configure_cpu_allocator(p) for p in sys.argv[1].split(",")])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
def cycle():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    cycle()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _cycles(policy: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _CYCLES, policy], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, int] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not GLIBC, reason="glibc malloc")
def test_cache_reuses_freed_memory_and_lean_hands_it_back() -> None:
    pages = 9 * (64 << 20) // 4096  # 9 cycles of 64 MiB in 4 KiB pages
    cache, lean, system = _cycles("cache"), _cycles("lean"), _cycles("system")
    assert cache["applied"] and lean["applied"] and not system["applied"]
    assert cache["faults"] < pages // 20  # the block is reused: no new pages
    assert lean["faults"] > pages // 2  # mmapped, handed back, faulted in again
    assert system["faults"] > pages // 2  # glibc mmaps blocks of 32 MiB and more
    after = _cycles("cache,lean")  # the later policy replaces the earlier one
    assert after["applied"] and after["faults"] > pages // 2


def test_unknown_policy_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"--cpu-allocator 'fast': use cache, lean or system"):
        configure_cpu_allocator("fast")


def test_system_changes_nothing() -> None:
    assert configure_cpu_allocator("system") is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_ARENA_MAX", "2"),
        ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1"),
    ],
)
def test_user_settings_win(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    for var in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(name, value)
    assert user_malloc_settings() == [name]
    assert configure_cpu_allocator("cache") is False
    assert configure_cpu_allocator("lean") is False


def test_cli_defaults_and_torch_free_parsing() -> None:
    # the policy must be applied before torch starts its threads: parsing imports no torch
    code = """
import json, sys
from nasmed.cli.main import build_parser
parser = build_parser()
def policy(verb):
    extra = ["TASK", "--arch", "a"] if verb in ("train", "transfer") else []
    return parser.parse_args([verb, *extra, "--out", "o"]).cpu_allocator
verbs = ("search", "demo", "train", "transfer")
print(json.dumps({"policies": {v: policy(v) for v in verbs}, "torch": "torch" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "policies": {"search": "lean", "demo": "cache", "train": "cache", "transfer": "cache"},
        "torch": False,
    }
