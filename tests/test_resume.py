"""Checkpoint and resume: bit-exact continuation on the CPU, Ctrl-C, SIGKILL, config mismatch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from habacli.artifact.codec import load_artifact
from habacli.distill.checkpoint import checkpoint_path_for, load_checkpoint, save_checkpoint
from habacli.distill.run import distill
from habacli.errors import ConfigError, Interrupted

OPTS = {
    "base_scale": 1,
    "hallucinator_init": "official",
    "batch_real": 8,
    "eval_every": 0,
    "device": "cpu",
    "val_fraction": 0.05,
    "checkpoint_every": 2,
    "batch_contrast": 2,
}
N = 2


@pytest.fixture(autouse=True, scope="module")
def _threads():
    """Two threads for every run here, the module-scoped uninterrupted run included (an autouse fixture of the
    module's scope is set up before it): bit-exactness holds at one thread count, and a test run under
    OMP_NUM_THREADS=1 would otherwise compare a 1-thread run with a 2-thread one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _run(out, fm, iterations, overrides=None, **kw):
    return distill(
        "fashion_mnist",
        ipc=1,
        baseline="dm",
        out=out,
        hallucinators=2,
        iterations=iterations,
        seed=5,
        data_dir=fm,
        preset="quick",
        options={**OPTS, **(overrides or {})},
        **kw,
    )


def _state(out):
    tensors, meta = load_checkpoint(checkpoint_path_for(out))
    return tensors, meta


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist_dir):
    out = tmp_path_factory.mktemp("full") / "full.safetensors"
    _run(out, fashion_mnist_dir, 2 * N)
    return out


def _assert_same_state(a, b):
    ta, ma = _state(a)
    tb, mb = _state(b)
    assert ma["iteration"] == mb["iteration"] == 2 * N
    assert set(ta) == set(tb)
    for key in ta:  # bases, hallucinators, adversary, optimiser momenta, RNG state
        assert torch.equal(ta[key], tb[key]), key
    aa, ab = load_artifact(a), load_artifact(b)
    assert torch.equal(aa.bases, ab.bases)
    for k in aa.hallucinators:
        assert torch.equal(aa.hallucinators[k], ab.hallucinators[k])


def test_resume_is_bit_exact(tmp_path, fashion_mnist_dir, uninterrupted):
    out = tmp_path / "split.safetensors"
    first = _run(out, fashion_mnist_dir, N)
    assert first.iterations == N and _state(out)[1]["iteration"] == N
    second = _run(out, fashion_mnist_dir, 2 * N, resume=True)
    assert second.start_iteration == N and second.iterations == 2 * N
    _assert_same_state(out, uninterrupted)


def test_ctrl_c_saves_and_resumes_exactly(tmp_path, fashion_mnist_dir, uninterrupted):
    out = tmp_path / "int.safetensors"

    def progress(event):
        if event.kind == "iteration" and event.done == N - 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="--resume"):
        _run(out, fashion_mnist_dir, 2 * N, progress=progress)
    assert _state(out)[1]["iteration"] == N - 1 and not out.exists()
    _run(out, fashion_mnist_dir, 2 * N, resume=True)
    _assert_same_state(out, uninterrupted)


def test_resume_with_another_config_is_refused(tmp_path, fashion_mnist_dir):
    out = tmp_path / "cfg.safetensors"
    _run(out, fashion_mnist_dir, 1)
    with pytest.raises(ConfigError, match="different configuration") as exc:
        distill(
            "fashion_mnist",
            ipc=1,
            baseline="dm",
            out=out,
            hallucinators=3,
            iterations=2,
            seed=5,
            data_dir=fashion_mnist_dir,
            preset="quick",
            options=dict(OPTS),
            resume=True,
        )
    assert "\n" not in str(exc.value) and "hallucinators" in str(exc.value)
    with pytest.raises(ConfigError, match="no checkpoint"):
        _run(tmp_path / "none.safetensors", fashion_mnist_dir, 2, resume=True)


def test_resume_accepts_a_checkpoint_that_predates_an_option(tmp_path, fashion_mnist_dir, uninterrupted):
    """A checkpoint written before ``hallucinator_init`` existed resumes as the default (official)."""
    out = tmp_path / "old.safetensors"
    _run(out, fashion_mnist_dir, N)
    tensors, meta = _state(out)
    assert meta["fingerprint"].pop("hallucinator_init") == "official"
    meta["config"].pop("hallucinator_init")
    save_checkpoint(checkpoint_path_for(out), tensors, meta)
    _run(out, fashion_mnist_dir, 2 * N, resume=True)
    _assert_same_state(out, uninterrupted)


@pytest.mark.parametrize("batch_real, resumes", [(256, True), (8, False)])
def test_a_checkpoint_that_predates_an_objective_option_resumes_as_its_default(
    tmp_path, fashion_mnist_dir, batch_real, resumes
):
    """An objective option missing from an older checkpoint (as DC/DSA's inner_set is from session 13's) counts
    as the objective's default: the run resumes when it uses the default, and is refused when it does not."""
    out = tmp_path / "old.safetensors"
    _run(out, fashion_mnist_dir, 1, {"batch_real": batch_real})
    tensors, meta = _state(out)
    assert meta["fingerprint"]["objective_config"].pop("batch_real") == batch_real
    meta["config"]["objective_config"].pop("batch_real")
    save_checkpoint(checkpoint_path_for(out), tensors, meta)
    if resumes:
        assert _run(out, fashion_mnist_dir, 2, {"batch_real": batch_real}, resume=True).start_iteration == 1
    else:
        with pytest.raises(ConfigError, match="batch_real"):
            _run(out, fashion_mnist_dir, 2, {"batch_real": batch_real}, resume=True)


def test_identity_init_runs_is_recorded_and_cannot_resume_as_official(tmp_path, fashion_mnist_dir):
    out = tmp_path / "ident.safetensors"
    _run(out, fashion_mnist_dir, 1, overrides={"hallucinator_init": "identity"})
    art = load_artifact(out)
    assert art.objective_config["hallucinator_init"] == "identity"
    with pytest.raises(ConfigError, match="hallucinator_init") as exc:
        _run(out, fashion_mnist_dir, 2, resume=True)
    assert "\n" not in str(exc.value)


def test_sigkill_keeps_the_artifact_and_the_checkpoint(tmp_path, fashion_mnist_dir):
    out = tmp_path / "kill.safetensors"
    _run(out, fashion_mnist_dir, 1)  # a finished run: artifact + checkpoint at iteration 1
    ckpt = checkpoint_path_for(out)
    before = ckpt.stat().st_mtime_ns
    cmd = [
        sys.executable,
        "-m",
        "habacli",
        "distill",
        "fashion_mnist",
        "--ipc",
        "1",
        "-k",
        "2",
        "--seed",
        "5",
        "--preset",
        "quick",
        "-n",
        "500",
        "--resume",
        "--checkpoint-every",
        "1",
        "--eval-every",
        "0",
        "--set",
        "batch_real=8",
        "--set",
        "val_fraction=0.05",
        "--set",
        "batch_contrast=2",
        "--set",
        "base_scale=1",
        "--set",
        "hallucinator_init=official",
        "--device",
        "cpu",
        "--data-dir",
        str(fashion_mnist_dir),
        "--out",
        str(out),
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and ckpt.stat().st_mtime_ns == before:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        assert ckpt.stat().st_mtime_ns != before, "no new checkpoint within the deadline"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    art = load_artifact(out)  # the previous artifact is intact
    assert art.num_hallucinators == 2
    it = _state(out)[1]["iteration"]
    assert it >= 2
    res = _run(out, fashion_mnist_dir, it + 1, resume=True)
    assert res.start_iteration == it and res.iterations == it + 1
    assert load_artifact(out).extra["distill"]["iterations"] == it + 1
