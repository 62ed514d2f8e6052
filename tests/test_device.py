"""Device helpers: the warning for a precision the CPU only emulates, and how the CLI prints it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from habacli.runtime import device as device_mod
from habacli.runtime.device import cpu_runs_natively, warn_if_emulated

FMNIST = "fashion_mnist"


@pytest.mark.parametrize(
    "flags, amp, expected",
    [
        ({"sse4_2", "avx2", "fma"}, "bf16", False),  # an AVX2-only EPYC (Zen 3)
        ({"avx2", "avx512f", "avx512bw"}, "bf16", False),  # AVX-512 without BF16 (an older Xeon)
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16", True),  # Zen 4, Cooper Lake
        ({"avx512f", "amx_tile", "amx_bf16"}, "bf16", True),  # Sapphire Rapids and later
        ({"fp", "asimd", "bf16"}, "bf16", True),  # aarch64 with FEAT_BF16
        ({"avx512_bf16"}, "fp16", False),
        ({"avx512_fp16", "amx_fp16"}, "fp16", True),
        ({"avx2"}, "off", None),
    ],
)
def test_native_precision_from_the_cpu_flags(flags, amp, expected):
    assert cpu_runs_natively(amp, frozenset(flags)) is expected


def test_this_machines_flags_are_read():
    flags = device_mod._cpu_flags()
    if flags is None:
        pytest.skip("no readable /proc/cpuinfo")
    # the flags come from /proc/cpuinfo as read independently here, and decide the answer
    text = Path("/proc/cpuinfo").read_text(errors="replace")
    mine = {f for line in text.splitlines() if line.split(":")[0].strip().lower() in ("flags", "features")
            for f in line.partition(":")[2].split()}  # fmt: skip
    assert flags == frozenset(mine)
    assert cpu_runs_natively("bf16") is any(f in mine for f in device_mod._NATIVE_FLAGS["bf16"])
    assert cpu_runs_natively("fp16") is any(f in mine for f in device_mod._NATIVE_FLAGS["fp16"])


def test_emulated_bf16_warns_on_the_cpu_only(monkeypatch):
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(UserWarning, match=r"--amp bf16: this CPU has no native bf16 .* drop --amp"):
        warn_if_emulated("cpu", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_emulated("cpu", None)
        warn_if_emulated("cpu", "off")
        warn_if_emulated("cuda", "bf16")  # a GPU has its own bf16 story
        monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
        warn_if_emulated("cpu", "bf16")
        monkeypatch.setattr(device_mod, "_cpu_flags", lambda: None)  # unknown: say nothing
        warn_if_emulated("cpu", "bf16")


def test_cli_prints_the_warning_as_one_line(monkeypatch, capsys, tmp_path, fashion_mnist_dir):
    """The warning comes at set-up, before the budget check that then fails: one warning line, one error line."""
    from habacli.cli import main

    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    monkeypatch.delenv("HABA_DEBUG", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exc:
            main(
                [
                    "distill",
                    FMNIST,
                    "--ipc",
                    "1",
                    "--baseline",
                    "dm",
                    "--budget",
                    "matched",
                    "--set",
                    "hallucinator_modulation=pixel",  # per-pixel maps leave no room at IPC 1
                    "--amp",
                    "bf16",
                    "--data-dir",
                    str(fashion_mnist_dir),
                    "--out",
                    str(tmp_path / "a.safetensors"),
                    "--device",
                    "cpu",
                ]
            )
    err = capsys.readouterr().err
    assert exc.value.code != 0
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("warning: --amp bf16: this CPU has no native bf16") and lines[1].startswith("error: ")


@pytest.mark.parametrize(
    "flags, expected",
    [
        (frozenset({"avx2", "fma"}), None),  # AVX2 only: bf16 would be emulated (18x slower), so fp32
        (frozenset({"avx512f", "avx512bw"}), None),  # AVX-512 without BF16
        (frozenset({"avx512f", "avx512_bf16"}), "bf16"),
        (frozenset({"avx512f", "amx_tile", "amx_bf16"}), "bf16"),
        (None, None),  # flags unknown: never guess a precision
    ],
)
def test_amp_auto_picks_bf16_only_where_the_cpu_runs_it(monkeypatch, flags, expected):
    from habacli.runtime.amp import check_amp
    from habacli.runtime.device import resolve_amp

    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: flags)
    assert check_amp("auto") == "auto"
    assert resolve_amp("auto", "cpu") == expected
    # explicit choices pass through whatever the CPU
    assert resolve_amp("bf16", "cpu") == "bf16" and resolve_amp(None, "cpu") is None


def test_amp_refusal_names_auto():
    from habacli.errors import ConfigError
    from habacli.runtime.amp import check_amp

    with pytest.raises(ConfigError, match=r"--amp must be off, auto or bf16, got 'fp32x'"):
        check_amp("fp32x")


@pytest.mark.parametrize("flags, recorded", [({"avx2", "fma"}, "off"), ({"avx512f", "avx512_bf16"}, "bf16")])
def test_distill_and_evaluate_record_what_amp_auto_became(monkeypatch, tmp_path, fashion_mnist_dir, flags, recorded):
    """A real (tiny) distillation and evaluation with --amp auto: the artifact and the evaluation record the
    precision that ran, never the word auto, so a reader knows what produced the numbers."""
    from habacli import load_artifact
    from habacli.api import distill, evaluate

    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset(flags))
    out = tmp_path / "a.safetensors"
    distill(
        FMNIST,
        ipc=1,
        baseline="dm",
        out=out,
        iterations=1,
        seed=0,
        data_dir=fashion_mnist_dir,
        preset="quick",
        device="cpu",
        options={"eval_every": 0, "batch_real": 8, "hallucinators": 2, "amp": "auto"},
    )
    assert load_artifact(out).objective_config["amp"] == recorded
    res = evaluate(
        out, models="convnetw32", runs=1, epochs=1, seed=0, device="cpu", data_dir=fashion_mnist_dir, amp="auto"
    )
    assert res.settings["amp"] == (None if recorded == "off" else "bf16")


@pytest.mark.parametrize("quiet", [True, False])
def test_cpu_compile_keeps_torchs_cuda_home_warning_out(tmp_path, quiet):
    """A CUDA toolkit without a GPU makes torch.utils.cpp_extension log "No CUDA runtime is found" when inductor
    imports it at the first CPU compile; --compile's check imports it first with that logger silenced. The
    control (no check) shows the line does appear under the same conditions, so the test can fail."""
    import os
    import subprocess
    import sys

    code = (
        "import torch\n"
        + ("from habacli.runtime.device import check_compile; check_compile(torch.device('cpu'))\n" if quiet else "")
        + "import torch.utils.cpp_extension\n"
    )
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("No CUDA runtime is found" in proc.stderr) is not quiet, proc.stderr
