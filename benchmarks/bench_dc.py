"""Seconds per iteration of the DC and DSA objectives (HaBa-factorised and plain) on Fashion-MNIST.

Runs the real engine (:class:`habacli.distill.run.Run`, paper preset: ConvNet-3, batch_real 256, DC's
loops) and times ``objective.run_iteration``, split into its phases: matching (real and synthetic
gradients + the synthesizer step) and the inner-loop network training. Reference on this machine
kind (research/reference-cpu.md): DC 3.9 s (IPC 1) and 111 s (IPC 10) per iteration, CIFAR-shaped.

    python benchmarks/bench_dc.py                          # DC+DSA x IPC 1, factorised and plain
    python benchmarks/bench_dc.py --ipc 10 --objective dc --iterations 1
    python benchmarks/bench_dc.py --ipc 10 --outer-loop 2  # a partial iteration (estimate printed)

Each configuration prints one JSON line (``cpu_s_per_iteration`` is the process CPU time, which with
``--threads 1`` is a fairer figure than wall time on a shared machine). With ``--outer-loop`` smaller than DC's value the full
iteration time is *estimated* from the measured per-outer-step phases (marked ``"estimated": true``).
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def bench(objective: str, ipc: int, factorize: bool, *, iterations: int, data_dir: str, threads: int,
          outer_loop: int | None, amp: str, model: str | None, hallucinators: int, warmup: bool = True,
          compile: bool = False) -> dict:
    import torch

    from habacli.distill.config import build_config
    from habacli.distill.run import Run
    from habacli.objectives import get_objective
    from habacli.networks.instancenorm import fused_double_backward
    from habacli.objectives import dc as dc_module
    from habacli.objectives._matching import get_loops

    torch.set_num_threads(threads)
    cls = get_objective(objective)
    overrides = {"checkpoint_every": 0, "eval_every": 0, "device": "cpu", "amp": amp, "hallucinators": hallucinators,
                 "compile": compile}
    if model:
        overrides["model"] = model
    if outer_loop:
        overrides["outer_loop"] = outer_loop
    cfg = build_config("fashion_mnist", objective, ipc, factorize=factorize, preset="paper",
                       objective_defaults=cls.defaults, overrides=overrides)
    t0 = time.perf_counter()
    run = Run(cfg, cls, data_dir=data_dir)
    setup = time.perf_counter() - t0
    phases = {"inner": 0.0, "synth_step": 0.0}
    inner_calls = [0]
    train = dc_module.train_network
    step = run.engine.synth_step

    def timed_train(*a, **k):
        t = time.perf_counter()
        try:
            return train(*a, **k)
        finally:
            phases["inner"] += time.perf_counter() - t
            inner_calls[0] += 1

    def timed_step(loss):
        t = time.perf_counter()
        try:
            return step(loss)
        finally:
            phases["synth_step"] += time.perf_counter() - t

    dc_module.train_network = timed_train
    run.engine.synth_step = timed_step
    if warmup:
        with fused_double_backward(compile):  # as Run.execute does under --compile
            run.objective.run_iteration(0)
    phases.update(inner=0.0, synth_step=0.0)
    inner_calls[0] = 0
    times = []
    cpu0 = time.process_time()
    for it in range(1, iterations + 1):
        t = time.perf_counter()
        with fused_double_backward(compile):
            run.objective.run_iteration(it)
        times.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu0) / iterations
    dc_module.train_network = train
    per_it = sum(times) / len(times)
    outer = run.objective.config["outer_loop"]
    inner_total = phases["inner"] / iterations
    matching = per_it - inner_total  # real + synthetic gradients, synthesizer (+ adversary) steps
    full_outer, _ = get_loops(ipc)
    out = {
        "objective": objective, "ipc": ipc, "factorize": factorize, "hallucinators": cfg.num_hallucinators,
        "model": run.model_name, "amp": amp, "compile": compile, "threads": threads, "outer_loop": outer,
        "inner_loop": run.objective.config["inner_loop"], "iterations_timed": iterations,
        "s_per_iteration": round(per_it, 3), "cpu_s_per_iteration": round(cpu, 3), "matching_s_per_outer_step": round(matching / outer, 3),
        "synth_step_s_per_outer_step": round(phases["synth_step"] / iterations / outer, 3),
        "inner_s_per_outer_step": round(inner_total / max(outer - 1, 1), 3) if outer > 1 else 0.0,
        "setup_s": round(setup, 2),
    }
    if outer < full_outer and outer > 1:
        out["estimated"] = True
        out["estimated_full_s_per_iteration"] = round(
            full_outer * out["matching_s_per_outer_step"] + (full_outer - 1) * out["inner_s_per_outer_step"], 1)
    # the process's peak so far: one configuration per process (--objective X --mode Y) for a per-config figure
    out["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", choices=["dc", "dsa", "both"], default="both")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--mode", choices=["haba", "plain", "both"], default="both")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--outer-loop", type=int, default=None, help="fewer outer steps than DC's (estimate the rest)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--amp", choices=["off", "bf16"], default="off")
    p.add_argument("--model", default=None)
    p.add_argument("--hallucinators", type=int, default=5)
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed first iteration")
    p.add_argument("--compile", action="store_true", help="as --compile: torch.compile + the fused double backward")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    objectives = ["dc", "dsa"] if a.objective == "both" else [a.objective]
    modes = [True, False] if a.mode == "both" else [a.mode == "haba"]
    for obj in objectives:
        for fact in modes:
            print(json.dumps(bench(obj, a.ipc, fact, iterations=a.iterations, data_dir=a.data_dir, threads=a.threads,
                                   outer_loop=a.outer_loop, amp=a.amp, model=a.model,
                                   hallucinators=a.hallucinators, warmup=not a.no_warmup, compile=a.compile)),
                  flush=True)


if __name__ == "__main__":
    main()
