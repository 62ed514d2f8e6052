"""Run the official MTT distill.py unchanged, on the CIFAR-shaped data, with outside timing.

- torchvision's CIFAR10 MD5 entries are set to None (as /work/ref/dc/launch.py), so the
  Fashion-MNIST-in-CIFAR-batches data is accepted without a download attempt.
- wandb.log (re-bound by wandb.init) is wrapped to print a timestamp line at each iteration's
  first log call ({"Progress": it}, top of the loop) and last one ({"Grand_Loss": ...}, after the
  optimizer steps). The algorithm is untouched; the only extra work is one print per call.

Usage: python launch.py ROOT/mtt/distill.py --dataset=CIFAR10 ...
Lines: "MTTREF_T start it=<it> t=<seconds since launch>" and "MTTREF_T end it=<it> t=... loss=..."
"""

import os
import runpy
import sys
import time

T0 = time.perf_counter()
print(f"MTTREF_T launch t=0.000 wall={time.time():.3f}", flush=True)

import torchvision.datasets as d  # noqa: E402

d.CIFAR10.train_list = [[n, None] for n, _ in d.CIFAR10.train_list]
d.CIFAR10.test_list = [[n, None] for n, _ in d.CIFAR10.test_list]
d.CIFAR10.meta = dict(d.CIFAR10.meta, md5=None)

import torch  # noqa: E402
import wandb  # noqa: E402

print(f"MTTREF_T torch_threads={torch.get_num_threads()} torch={torch.__version__}", flush=True)

_orig_init = wandb.init
_state = {"it": None}


def _timed(log):
    def wrapper(data=None, *args, **kwargs):
        if isinstance(data, dict):
            if "Progress" in data:
                _state["it"] = data["Progress"]
                print(f"MTTREF_T start it={data['Progress']} t={time.perf_counter() - T0:.3f}", flush=True)
            elif "Grand_Loss" in data:
                loss = float(data["Grand_Loss"])
                print(f"MTTREF_T end it={_state['it']} t={time.perf_counter() - T0:.3f} loss={loss:.4f}", flush=True)
        return log(data, *args, **kwargs)

    return wrapper


def _init(*args, **kwargs):
    run = _orig_init(*args, **kwargs)
    wandb.log = _timed(wandb.log)
    return run


wandb.init = _init

script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(script))
try:
    runpy.run_path(script, run_name="__main__")
finally:
    print(f"MTTREF_T exit t={time.perf_counter() - T0:.3f}", flush=True)
