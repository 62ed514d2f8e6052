"""Kill-anywhere: SIGKILL ``haba distill``, ``haba experts`` and ``haba expand`` at random (seeded) moments,
then resume or rerun (issue 23, item 2). A launch is killed after U(0, 1.3 T) seconds, T the wall time of
an uninterrupted run (from the interpreter's start); a launch that finishes first completes its cycle.

After every kill the output name holds nothing half-written: ``--out`` is absent, the previous complete
output or the new complete one (loaded and checked); a previous output survives until the new one is
complete (each cycle starts over an output of another seed or format); a distill checkpoint never goes
back. When a cycle completes, its output equals an uninterrupted run's (CPU, same seed: tensors, or
files byte for byte). The 20-kill runs are ``slow``; the default run kills ``haba expand`` twice and
checks the folder swap of :func:`habacli.runtime.atomic.atomic_dir` step by step.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "formats" / "examples"
SEED = 2323  # the RNG of the kill delays


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "habacli", *args]


def _run(args: list[str]) -> float:
    """Run the CLI to completion; return its wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run(_cli(args), env=_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return time.perf_counter() - t0


@dataclass
class Tally:
    """What a kill loop did."""

    kills: int = 0
    completed: int = 0  # cycles that ran to the end (a run that finished before its kill, then checked)
    attempts: int = 0
    leftovers: set[str] = field(default_factory=set)  # temporary names left beside the output by kills

    def line(self, what: str) -> str:
        return f"{what}: {self.kills} kills survived, {self.completed} cycles completed, {self.attempts} launches"


def _kill_loop(
    *,
    kills: int,
    duration: float,
    rng: random.Random,
    command: Callable[[int], list[str]],
    check_after_kill: Callable[[int], None],
    check_completed: Callable[[int], None],
    start_cycle: Callable[[int], None],
    max_attempts: int,
) -> Tally:
    """Launch ``command(cycle)``; SIGKILL it after ``U(0, duration)`` s and check the output; a launch that
    finishes first ends the cycle (checked against the reference) and the next cycle starts."""
    tally, cycle = Tally(), 0
    start_cycle(cycle)
    while tally.kills < kills:
        tally.attempts += 1
        assert tally.attempts <= max_attempts, tally.line("too many launches")
        delay = rng.uniform(0.0, duration)
        proc = subprocess.Popen(
            _cli(command(cycle)), env=_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            try:
                proc.wait(delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(60)
            err = proc.stderr.read().decode() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(60)
            if proc.stderr:
                proc.stderr.close()
        if proc.returncode == -signal.SIGKILL:
            tally.kills += 1
            check_after_kill(cycle)
        else:
            assert proc.returncode == 0, err
            check_completed(cycle)
            tally.completed += 1
            cycle += 1
            start_cycle(cycle)
    return tally


# -- distill ---------------------------------------------------------------------------------

DISTILL_ITERATIONS = 12


def _distill_args(out: Path, seed: int, fm: Path, *, resume: bool) -> list[str]:
    args = ["distill", "fashion_mnist", "--ipc", "1", "--baseline", "dm", "--preset", "quick"]
    args += ["--iterations", str(DISTILL_ITERATIONS), "--checkpoint-every", "2", "--eval-every", "0"]
    args += ["--set", "batch_real=16", "--seed", str(seed), "--device", "cpu", "--data-dir", str(fm)]
    args += ["--out", str(out)] + (["--resume"] if resume else [])
    return args


def _tensors(path: Path) -> dict:
    from habacli.artifact.codec import load_artifact

    art = load_artifact(path, verify=True)  # a half-written file fails here (size, header or checksum)
    return {"payload_sha256": art.payload_sha256, **{k: v.clone() for k, v in art.tensors().items()}}


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(a[k] == b[k] if isinstance(a[k], str) else torch.equal(a[k], b[k]) for k in a)


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def _hidden(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(".")}


def _distill_kills(tmp_path: Path, fm: Path, kills: int) -> Tally:
    from habacli.distill.checkpoint import checkpoint_path_for, load_checkpoint

    seeds = (11, 12)
    refs, duration = {}, 0.0
    for s in seeds:  # the uninterrupted runs, one per seed
        ref = tmp_path / f"ref{s}" / "a.safetensors"
        duration = max(duration, _run(_distill_args(ref, s, fm, resume=False)))
        refs[s] = _tensors(ref)
    golden = EXAMPLES / "fashion_plain.safetensors"
    work = tmp_path / "work"
    work.mkdir()
    out = work / "a.safetensors"
    ckpt = checkpoint_path_for(out)
    shutil.copy(golden, out)  # a previous artifact at --out: it must survive until the first run completes
    refs["golden"] = _tensors(golden)
    state = {"previous": "golden", "iteration": 0}

    def seed(cycle: int) -> int:
        return seeds[cycle % 2]

    def start_cycle(cycle: int) -> None:
        ckpt.unlink(missing_ok=True)  # a fresh run over the previous cycle's artifact (the other seed)
        state["iteration"] = 0

    def command(cycle: int) -> list[str]:
        return _distill_args(out, seed(cycle), fm, resume=ckpt.exists())

    def check_after_kill(cycle: int) -> None:
        assert _visible(work) <= {out.name, ckpt.name}, _visible(work)
        got = _tensors(out)  # never absent: the previous artifact stays until the new one is complete
        assert _same(got, refs[state["previous"]]) or _same(got, refs[seed(cycle)])
        if ckpt.exists():  # complete, and never behind the last one seen: the run resumes from it
            it = int(load_checkpoint(ckpt)[1]["iteration"])
            assert state["iteration"] <= it <= DISTILL_ITERATIONS
            state["iteration"] = it

    def check_completed(cycle: int) -> None:
        assert _same(_tensors(out), refs[seed(cycle)]), f"cycle {cycle}: the resumed run differs"
        state["previous"] = seed(cycle)

    tally = _kill_loop(
        kills=kills,
        duration=1.3 * duration,  # a little past the run: some launches complete, and start a new cycle
        rng=random.Random(SEED),
        command=command,
        check_after_kill=check_after_kill,
        check_completed=check_completed,
        start_cycle=start_cycle,
        max_attempts=6 * kills,
    )
    # finish the last cycle: the final artifact equals the uninterrupted run's
    _run(command(tally.completed))
    check_completed(tally.completed)
    tally.leftovers = _hidden(work)
    return tally


@pytest.mark.slow
def test_kill_distill_anywhere(tmp_path, fashion_mnist_dir):
    tally = _distill_kills(tmp_path, fashion_mnist_dir, 20)
    print(tally.line("distill"), f"leftover temporaries: {len(tally.leftovers)}")
    assert not tally.leftovers  # the last run removed what the killed ones left


# -- experts ---------------------------------------------------------------------------------


def _experts_args(out: Path, fm: Path) -> list[str]:
    args = ["experts", "fashion_mnist", "--num", "2", "--epochs", "2", "--subset", "256", "--seed", "4"]
    return args + ["--device", "cpu", "--data-dir", str(fm), "--out", str(out)]


def _check_expert_folder(out: Path, ref: Path) -> None:
    """Every visible file is complete: expert files byte-identical to the reference, the manifest JSON
    listing only files present with their reference checksums; a partial file is a readable checkpoint."""
    from safetensors import safe_open

    if not out.exists():
        return
    ref_manifest = json.loads((ref / "manifest.json").read_text())
    want = {e["file"]: e["sha256"] for e in ref_manifest["experts"]}
    for name in _visible(out):
        if name == "manifest.json":
            manifest = json.loads((out / name).read_text())
            for e in manifest["experts"]:
                assert want[e["file"]] == e["sha256"], e
        else:
            assert name in want, name
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    for name in _hidden(out):
        if name.endswith(".partial.safetensors"):
            with safe_open(str(out / name), framework="pt") as f:
                assert f.metadata()


def _experts_kills(tmp_path: Path, fm: Path, kills: int) -> Tally:
    ref = tmp_path / "ref"
    duration = _run(_experts_args(ref, fm))
    out = tmp_path / "work" / "experts"

    def start_cycle(cycle: int) -> None:
        shutil.rmtree(out, ignore_errors=True)

    def check_completed(cycle: int) -> None:
        _check_expert_folder(out, ref)
        assert _visible(out) == _visible(ref)
        assert (
            json.loads((out / "manifest.json").read_text())["experts"]
            == json.loads((ref / "manifest.json").read_text())["experts"]
        )

    tally = _kill_loop(
        kills=kills,
        duration=1.3 * duration,  # a little past the run: some launches complete, and start a new cycle
        rng=random.Random(SEED + 1),
        command=lambda cycle: _experts_args(out, fm),
        check_after_kill=lambda cycle: _check_expert_folder(out, ref),
        check_completed=check_completed,
        start_cycle=start_cycle,
        max_attempts=6 * kills,
    )
    _run(_experts_args(out, fm))  # the rerun finishes what the last kill interrupted
    check_completed(tally.completed)
    tally.leftovers = {n for n in _hidden(out) if not n.endswith(".partial.safetensors")}
    return tally


@pytest.mark.slow
def test_kill_experts_anywhere(tmp_path, fashion_mnist_dir):
    tally = _experts_kills(tmp_path, fashion_mnist_dir, 20)
    print(tally.line("experts"), f"leftover temporaries: {len(tally.leftovers)}")
    assert not tally.leftovers  # the last run removed what the killed ones left


# -- expand ----------------------------------------------------------------------------------

FORMATS = ("imagefolder", "parquet", "safetensors")


def _expand_args(out: Path, fmt: str) -> list[str]:
    return ["expand", str(EXAMPLES / "fashion_haba_zca.safetensors"), "--out", str(out), "-f", fmt, "--overwrite"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _expand_kills(tmp_path: Path, kills: int) -> Tally:
    from habacli.api import expand

    refs = {}
    for fmt in FORMATS:  # the uninterrupted outputs (in-process: the same code as the CLI)
        expand(str(EXAMPLES / "fashion_haba_zca.safetensors"), tmp_path / f"ref-{fmt}", fmt=fmt)
        refs[fmt] = _tree(tmp_path / f"ref-{fmt}")
    work = tmp_path / "work"
    work.mkdir()
    out = work / "images"
    # a previous expansion at --out (the last format, so cycle 0 replaces it): it must survive every kill
    # until a new one is complete; its wall time is T
    duration = _run(_expand_args(out, FORMATS[-1]))
    assert _tree(out) == refs[FORMATS[-1]]
    state = {"previous": FORMATS[-1]}

    def check_after_kill(cycle: int) -> None:
        assert _visible(work) == {out.name}, _visible(work)  # never absent
        got = _tree(out)  # the previous expansion until the new one is complete
        assert got in (refs[state["previous"]], refs[FORMATS[cycle % 3]])

    def check_completed(cycle: int) -> None:
        assert _tree(out) == refs[FORMATS[cycle % 3]]
        state["previous"] = FORMATS[cycle % 3]

    tally = _kill_loop(
        kills=kills,
        duration=1.3 * duration,  # a little past the run: some launches complete, and start a new cycle
        rng=random.Random(SEED + 2),
        command=lambda cycle: _expand_args(out, FORMATS[cycle % 3]),
        check_after_kill=check_after_kill,
        check_completed=check_completed,
        start_cycle=lambda cycle: None,
        max_attempts=6 * kills,
    )
    _run(_expand_args(out, FORMATS[tally.completed % 3]))
    check_completed(tally.completed)
    tally.leftovers = _hidden(work)
    return tally


def test_kill_expand_twice(tmp_path):
    """The default run's variant: two kills into ``haba expand`` (a few seconds)."""
    tally = _expand_kills(tmp_path, 2)
    assert tally.kills == 2 and not tally.leftovers


@pytest.mark.slow
def test_kill_expand_anywhere(tmp_path):
    tally = _expand_kills(tmp_path, 20)
    print(tally.line("expand"), f"leftover temporaries: {len(tally.leftovers)}")
    assert not tally.leftovers  # the last run removed what the killed ones left


# -- the folder swap -------------------------------------------------------------------------


def test_atomic_dir_overwrite_never_leaves_the_name_absent(tmp_path, monkeypatch):
    """Replacing a folder: after every rename the destination holds the old folder or the new one
    (it used to be moved aside first, so a kill between the two renames left no folder at all)."""
    from habacli.runtime import atomic

    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    seen: list[str] = []
    real_replace, real_exchange = os.replace, atomic._exchange

    def observe() -> None:
        seen.append((dest / "a.txt").read_text() if dest.is_dir() else "ABSENT")

    def replace(src, dst):
        real_replace(src, dst)
        observe()

    def exchange(a, b):
        ok = real_exchange(a, b)
        observe()
        return ok

    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic, "_exchange", exchange)
    with atomic.atomic_dir(dest, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (dest / "a.txt").read_text() == "new"
    assert seen and "ABSENT" not in seen, seen
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]  # the old folder is gone


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """A SIGKILLed writer leaves ``.NAME.HOST-PID-*.tmp`` beside the destination; the next atomic write to
    that destination removes it once that process is gone, and leaves a running process's own alone."""
    from habacli.runtime import atomic

    dest = tmp_path / "a.safetensors"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = atomic._host()
    stale_file = tmp_path / f".{dest.name}.{host}-{dead.pid}-abcd1234.tmp"
    stale_dir = tmp_path / f".{dest.name}.{host}-{dead.pid}-efgh5678.tmp"
    live = tmp_path / f".{dest.name}.{host}-{os.getppid()}-ijkl9012.tmp"  # the test runner's parent runs
    other = tmp_path / f".other.{host}-{dead.pid}-mnop3456.tmp"  # another destination's: not ours to judge
    stale_file.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "x.png").write_bytes(b"half")
    live.write_bytes(b"busy")
    other.write_bytes(b"half")
    atomic.atomic_write_bytes(dest, b"new")
    assert dest.read_bytes() == b"new"
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and other.exists()
