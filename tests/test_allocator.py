"""The host-allocator tuning that every long-running command applies (habacli/runtime/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

_PROBE = "from habacli.runtime.allocator import tune_host_allocator as t; a = t(); b = t(); print(a, b)"


def _probe(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return out.stdout.strip()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_settings_once_and_for_all():
    assert _probe() == "True True"


def test_opt_out_keeps_the_system_allocator():
    assert _probe(HABA_MALLOC="system") == "False False"


def test_pick_device_applies_it():
    code = "import habacli.runtime.allocator as a, habacli.runtime.device as d; d.pick_device('cpu'); print(a._state)"
    env = {k: v for k, v in os.environ.items() if k != "HABA_MALLOC"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out.stdout.strip() == str(glibc)  # applied (True) on glibc, else decided off; never left undecided
