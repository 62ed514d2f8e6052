"""The accuracy tables, in one command: Fashion-MNIST and CIFAR-shaped Fashion-MNIST, random real images,
DM / DSA and HaBa+DM / HaBa+DSA (with haba's recipe rows), at IPC 1 and 10, MTT and HaBa+MTT at Fashion-MNIST
IPC 1 (one small expert, made once when missing), plus cross-architecture rows.

Every row runs the real CLI in a subprocess (``python -m habacli distill ... --json``, then ``python -m
habacli evaluate ARTIFACT ... --json -q``; or ``evaluate DATASET --baseline random``) and records its wall
times. Results go to ``OUT/results.json`` after each row, so an interrupted table resumes where it stopped
(rows already there are skipped; a distillation whose artifact is complete is not run again). The
markdown tables are printed at the end, with the exact commands of every row, the CPU model and the date.

The CIFAR-shaped rows read Fashion-MNIST padded to 32x32x3 and written as CIFAR-10 python batches
(``benchmarks/make_cifar_fmnist.py``; ``--cifar-dir``, made when missing) as ``cifar10 --data-dir DIR``,
in ZCA space on both sides (``--set zca=true`` for the distilled sets, ``--zca`` for random real images).

Budgets are far below the papers' (DM: 20,000 iterations; here DM rows run 200 unless ``--iterations``,
DSA rows 100 of the paper's 1,000 at IPC 1 and 10 at IPC 10; MTT rows 200 (IPC 1) and 100 (IPC 10) of 5,000 against one
3-epoch expert with ``max_start_epoch`` 2, CIFAR-10 IPC 1's official value) and the evaluation is shortened (``--epochs``, ``--runs``): the table says so.

    python benchmarks/accuracy_table.py --list
    python benchmarks/accuracy_table.py --out runs/accuracy --epochs 300 --runs 3 [--only ROW,ROW] [--threads N]
    python benchmarks/accuracy_table.py --results benchmarks/results/accuracy.json --report

The repository keeps the results of its last table run in ``benchmarks/results/accuracy.json`` (pass it as
``--results`` to extend it; artifacts stay under ``--out``); ``--report`` prints its tables and commands.

``--split val`` scores every row on the held-out validation split instead (``haba evaluate --split val``), the
split recipes are chosen on; ``--split test`` (the default) is for the figures reported after the choice.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
XARCH_MODELS = "convnet,resnet18,vgg11,alexnet"
DM_ITERATIONS = 200  # the table's DM budget since session 1 (rows keep their names, so results stay valid)
MTT_ITERATIONS = 200  # MTT rows (session 11): 200 iterations against one small expert
MTT_IPC10_ITERATIONS = 100  # MTT at IPC 10 (session 14): 100 iterations, same expert
DSA_IPC10_ITERATIONS = 10  # DSA at IPC 10 (session 14): 10 of the paper's 1,000 (6-8 min each on 2 cores)
DSA_IPC1_ITERATIONS = 100  # DSA at IPC 1 (session 15): 100 of the paper's 1,000 (~17 min each; 1,000 is ~3 h)
MTT_EXPERT = ["--num", "1", "--epochs", "3"]  # max_start_epoch 2 - 1 + expert_epochs 2 = 3 epochs
MTT_SETTINGS = ["--set", "max_start_epoch=2"]
CIFAR_ZCA = ["--set", "zca=true"]  # CIFAR-shaped rows: the distilled sets in ZCA space, as random's --zca
SECTIONS = {
    "fashion_mnist": "Fashion-MNIST (28x28 grey, full real data)",
    "cifar_fmnist": "CIFAR-shaped Fashion-MNIST (32x32x3, as `cifar10 --data-dir CIFAR_DIR`, ZCA)",
}
# Published figures for the plain baselines on Fashion-MNIST (ConvNet; baselines.md 6.1), by row.
PUBLISHED = {"dm-ipc1": "70.7 ± 0.6", "dm-ipc10": "83.5 ± 0.3", "dm-ipc10-bf16": "83.5 ± 0.3", "dsa-ipc1": "70.6 ± 0.6"}

LOWRES = ["--budget", "matched", "--base-scale", "2"]
CHANNEL = ["--set", "hallucinator_modulation=channel"]


def _objective_rows(dataset: str, prefix: str, objective: str, ipc: int) -> list[dict]:
    """X, HaBa+X, and the recipe rows of one objective at one IPC: the plain set at half resolution (is the gain
    the bases' resolution?) and HaBa+X with one of the presets' choices undone (docs/fidelity.md)."""
    up = objective.upper()
    budget = "matched" if ipc > 1 else "paper"  # IPC 1: 5 per-pixel hallucinators alone exceed 1 image/class
    base: dict = {"dataset": dataset, "objective": objective, "ipc": ipc}
    if objective == "dsa":
        base["iterations"] = DSA_IPC10_ITERATIONS if ipc > 1 else DSA_IPC1_ITERATIONS
    haba = f"{prefix}haba-{objective}-ipc{ipc}"
    rows = [
        {**base, "name": f"{prefix}{objective}-ipc{ipc}", "method": up, "distill": ["--no-factorize"]},
        {**base, "name": haba, "method": f"HaBa+{up} ({budget} budget)", "distill": ["--budget", budget]},
    ]
    # matched storage at IPC 1: auto modulation takes per-channel maps and auto base scale half-size bases (not
    # under ZCA, where full-size bases leave no room for the hallucinators)
    matched1 = ipc == 1 and dataset == "fashion_mnist"
    if matched1:
        rows.append(
            {
                **base,
                "name": f"{haba}-matched",
                "method": f"HaBa+{up} (matched budget, per-channel maps)",
                "distill": ["--budget", "matched"],
            }
        )
    rows.append(
        {
            **base,
            "name": f"{prefix}{objective}-ipc{ipc}-lowres",
            "method": f"{up}, 1/2-resolution images (matched, `--base-scale 2`)",
            "distill": ["--no-factorize", *LOWRES],
        }
    )
    recipe = ["--budget", "matched"]  # the ablations undo one choice of the matched HaBa+X row each
    undo = [("official-init", "official init", ["--set", "hallucinator_init=official"])]
    if ipc > 1:  # at IPC 1 neither full-size bases nor per-pixel maps fit the storage of one image per class
        if dataset == "fashion_mnist":  # ZCA keeps full-size bases (auto_base_scale): nothing to undo
            undo.append(("fullres", "full-size bases, `--base-scale 1`", ["--base-scale", "1"]))
        undo.append(("pixel", "per-pixel maps", ["--set", "hallucinator_modulation=pixel"]))
    if ipc == 1 and not matched1:
        undo = []
    for suffix, what, extra in undo:
        rows.append(
            {
                **base,
                "name": f"{haba}-{'matched-' if ipc == 1 else ''}{suffix}",
                "method": f"HaBa+{up} (matched, {what})",
                "distill": [*recipe, *extra],
            }
        )
    return rows


def table(args: argparse.Namespace) -> list[dict]:
    """Every row: name, dataset, method, ipc, objective, distill args (None: random real), evaluate args."""
    rows: list[dict] = []
    for dataset, prefix in (("fashion_mnist", ""), ("cifar_fmnist", "cifar-")):
        for ipc in (1, 10):
            rows.append(
                {
                    "name": f"{prefix}random-ipc{ipc}",
                    "dataset": dataset,
                    "method": "random real images",
                    "ipc": ipc,
                    "objective": None,
                    "distill": None,
                    "evaluate": ["--zca"] if dataset == "cifar_fmnist" else [],
                }
            )
            for objective in ("dm", "dsa"):
                rows += _objective_rows(dataset, prefix, objective, ipc)
    if args.bf16:  # the accuracy effect of --amp bf16 (DM's real-image forward under autocast)
        rows.append(
            {
                "name": "dm-ipc10-bf16",
                "dataset": "fashion_mnist",
                "method": "DM, distilled with --amp bf16",
                "ipc": 10,
                "objective": "dm",
                "distill": ["--no-factorize", "--amp", "bf16"],
            }
        )
        rows.append(
            {
                "name": "random-ipc10-eval-bf16",
                "dataset": "fashion_mnist",
                "objective": None,
                "method": "random real images, evaluated with --amp bf16",
                "ipc": 10,
                "distill": None,
                "evaluate": ["--amp", "bf16"],
            }
        )
    mtt = {"dataset": "fashion_mnist", "objective": "mtt", "ipc": 1}
    rows += [  # MTT at a toy expert budget (docs/benchmarks.md, "Session 11" and "Session 12")
        {**mtt, "name": "mtt-ipc1", "method": "MTT", "distill": ["--no-factorize"]},
        {**mtt, "name": "haba-mtt-ipc1", "method": "HaBa+MTT (paper budget)", "distill": []},
        {
            **mtt,
            "name": "haba-mtt-ipc1-matched-channel",
            "method": "HaBa+MTT (matched, per-channel modulation)",
            "distill": ["--budget", "matched", *CHANNEL],
        },
    ]
    mtt10 = {**mtt, "ipc": 10, "iterations": MTT_IPC10_ITERATIONS}
    rows += [  # matched storage at IPC 10 (docs/benchmarks.md, "Session 14")
        {**mtt10, "name": "mtt-ipc10", "method": "MTT", "distill": ["--no-factorize"]},
        {**mtt10, "name": "haba-mtt-ipc10", "method": "HaBa+MTT (matched budget)", "distill": ["--budget", "matched"]},
    ]
    by_name = {r["name"]: r for r in rows}
    # cross-architecture: the artifact of another row on ConvNet, ResNet-18, VGG-11 and AlexNet (an MTT set's learned
    # lr trains only the network it was learned on, the others 0.01: docs/fidelity.md, Evaluation)
    for source in ("dm-ipc10", args.cross_arch_haba, "mtt-ipc10", "haba-mtt-ipc10"):
        if source not in by_name or by_name[source]["distill"] is None:
            raise SystemExit(f"--cross-arch-haba: {source!r} is not a distilled row")
        src = by_name[source]
        rows.append(
            {**src, "name": f"xarch-{source}", "method": src["method"], "artifact_of": source, "cross_arch": True}
        )
    for r in rows:
        r.setdefault("evaluate", [])
    return rows


def selected(rows: list[dict], only: str) -> list[dict]:
    if not only:
        return rows
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {r["name"] for r in rows}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--only: unknown row(s) {', '.join(unknown)} (see --list)")
    return [r for r in rows if r["name"] in names]


# --------------------------------------------------------------------------------------- commands


def _haba() -> list[str]:
    return [sys.executable, "-m", "habacli"]


def _data(row: dict, args: argparse.Namespace) -> tuple[str, str]:
    """(dataset name for the CLI, --data-dir)."""
    if row["dataset"] == "cifar_fmnist":
        return "cifar10", str(args.cifar_dir)
    return "fashion_mnist", FMNIST_DIR


def _iterations(row: dict, args: argparse.Namespace) -> list[str]:
    if args.iterations is not None:
        return ["--iterations", str(args.iterations)]
    if "iterations" in row:
        return ["--iterations", str(row["iterations"])]
    fixed = {"dm": DM_ITERATIONS, "mtt": MTT_ITERATIONS}.get(row["objective"])
    return ["--iterations", str(fixed)] if fixed else []


def experts_dir(args: argparse.Namespace) -> Path:
    return args.out / "experts-fmnist-3ep"


def experts_cmd(args: argparse.Namespace) -> list[str]:
    return [
        *_haba(),
        "experts",
        "fashion_mnist",
        *MTT_EXPERT,
        *_amp(args, []),
        "--data-dir",
        FMNIST_DIR,
        "--out",
        str(experts_dir(args)),
        "-q",
    ]


def _mtt(row: dict, args: argparse.Namespace) -> list[str]:
    return ["--experts", str(experts_dir(args)), *MTT_SETTINGS] if row["objective"] == "mtt" else []


def _amp(args: argparse.Namespace, extra: list[str]) -> list[str]:
    return ["--amp", args.amp] if args.amp != "off" and "--amp" not in extra else []


def artifact(row: dict, args: argparse.Namespace) -> Path:
    return args.out / f"{row.get('artifact_of', row['name'])}.haba"


def distill_cmd(row: dict, args: argparse.Namespace) -> list[str]:
    name, data_dir = _data(row, args)
    zca = CIFAR_ZCA if row["dataset"] == "cifar_fmnist" else []
    return [
        *_haba(),
        "distill",
        name,
        "--ipc",
        str(row["ipc"]),
        "--baseline",
        row["objective"],
        *row["distill"],
        *zca,
        *_mtt(row, args),
        "--preset",
        "paper",
        *_iterations(row, args),
        *_amp(args, row["distill"]),
        "--eval-every",
        "0",
        "--checkpoint-every",
        "50",
        "--seed",
        "0",
        "--data-dir",
        data_dir,
        "--out",
        str(artifact(row, args)),
        "--json",
        "-q",
    ]


def evaluate_cmd(row: dict, args: argparse.Namespace) -> list[str]:
    name, data_dir = _data(row, args)
    models = XARCH_MODELS if row.get("cross_arch") else "convnet"
    common = [
        "--models",
        models,
        "--runs",
        str(args.runs),
        "--epochs",
        str(args.epochs),
        *_amp(args, row["evaluate"]),
        *row["evaluate"],
        *(["--split", "val"] if args.split == "val" else []),
        "--data-dir",
        data_dir,
        "--json",
        "-q",
    ]
    if row["distill"] is None:
        return [*_haba(), "evaluate", name, "--baseline", "random", "--ipc", str(row["ipc"]), *common]
    return [*_haba(), "evaluate", str(artifact(row, args)), *common]


def make_cifar_cmd(args: argparse.Namespace) -> list[str]:
    script = os.path.relpath(HERE / "make_cifar_fmnist.py")
    return [
        sys.executable,
        script if not script.startswith("..") else str(HERE / "make_cifar_fmnist.py"),
        str(args.cifar_dir),
    ]


def shown(cmd: list[str], args: argparse.Namespace | None) -> str:
    """A command as a shell line (``python`` for this interpreter, OMP_NUM_THREADS when set)."""
    text = shlex.join(["python" if c == sys.executable else c for c in cmd])
    return f"OMP_NUM_THREADS={args.threads} {text}" if args and args.threads else text


def row_commands(row: dict, args: argparse.Namespace) -> list[list[str]]:
    return [evaluate_cmd(row, args)] if row["distill"] is None else [distill_cmd(row, args), evaluate_cmd(row, args)]


# --------------------------------------------------------------------------------------- running


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        **os.environ,
        "HABA_DEBUG": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p),
    }
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def _run(cmd: list[str], args: argparse.Namespace) -> tuple[dict, float]:
    print(f"$ {shown(cmd, args)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(args))
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shown(cmd, args)}\n{proc.stderr[-2000:]}")
    return (json.loads(proc.stdout) if proc.stdout.strip() else {}), seconds


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _record(path: Path, name: str, result: dict) -> dict:
    """Add one row to the results file under a lock, re-reading it first: several table processes with disjoint
    ``--only`` lists may share one file. Returns the merged results."""
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        results[name] = result
        _write_json(path, results)
    return results


def ensure_cifar(args: argparse.Namespace) -> None:
    if not (args.cifar_dir / "cifar-10-batches-py").is_dir():
        _run(make_cifar_cmd(args), args)


def run_row(row: dict, args: argparse.Namespace, results: dict) -> dict:
    machine = {"cpu": cpu_model(), "date": datetime.date.today().isoformat(), "threads": args.threads}
    result: dict = {
        "method": row["method"],
        "ipc": row["ipc"],
        "dataset": row["dataset"],
        "settings": {
            "iterations": (_iterations(row, args) or [None, "preset"])[1],
            "epochs": args.epochs,
            "runs": args.runs,
            "amp": args.amp,
        },
        **machine,
    }
    if row["dataset"] == "cifar_fmnist":
        ensure_cifar(args)
    if row["objective"] == "mtt" and not (experts_dir(args) / "manifest.json").exists():
        _run(experts_cmd(args), args)  # resumable by itself: finished epochs are kept
    if row["distill"] is None:
        ev, secs = _run(evaluate_cmd(row, args), args)
        result.update(evaluate_s=round(secs, 1), evaluation=ev, commands=[shown(evaluate_cmd(row, args), args)])
        return result
    art, cmd = artifact(row, args), distill_cmd(row, args)
    sidecar = art.with_name(art.name + ".distill.json")  # a finished distillation: its command, output, time
    done = json.loads(sidecar.read_text()) if sidecar.exists() and art.exists() else None
    source = results.get(row.get("artifact_of", ""))
    if done is None and source and art.exists() and "distill_s" in source:  # a row finished before sidecars
        done = {
            "key": shown(cmd, None),
            "distill": source.get("distill"),
            "distill_s": source["distill_s"],
            "command": (source.get("commands") or [shown(cmd, args)])[0],
            "cpu": source.get("cpu"),
            "date": source.get("date"),
        }
    if done is None or done.get("key") != shown(cmd, None):  # the threads do not change the result
        run = [*cmd, "--resume"] if any(args.out.glob(f"{art.name}.ckpt*")) else cmd
        dist, dsecs = _run(run, args)
        done = {
            "key": shown(cmd, None),
            "command": shown(cmd, args),
            "distill": dist,
            "distill_s": round(dsecs, 1),
            **machine,
        }
        _write_json(sidecar, done)
    ev, esecs = _run(evaluate_cmd(row, args), args)
    info, _ = _run([*_haba(), "info", str(art), "--json"], args)
    budget = info.get("haba", {}).get("extra", {}).get("distill", {}).get("budget")
    result.update(
        distill_s=done["distill_s"],
        evaluate_s=round(esecs, 1),
        distill=done["distill"],
        evaluation=ev,
        storage=budget,
        distill_cpu=done.get("cpu"),
        distill_date=done.get("date"),
        commands=[done["command"], shown(evaluate_cmd(row, args), args)],
    )
    if row.get("artifact_of"):
        result["artifact_of"] = row["artifact_of"]
    if done.get("note"):  # an artifact adopted from an earlier row (its sidecar says how)
        result["note"] = done["note"]
    return result


# --------------------------------------------------------------------------------------- output


def _acc(ev: dict, model: str = "convnet") -> str:
    m = ev["models"].get(model) if "models" in ev else ev
    return f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}" if m else "-"


def _stored(r: dict, channels: int, side: int) -> str:
    storage = r.get("storage") or {}
    stored = storage.get("total_values") if isinstance(storage, dict) else None
    return f"{stored:,}" if isinstance(stored, int) else f"{10 * r['ipc'] * channels * side * side:,} (real images)"


def markdown(results: dict, rows: list[dict]) -> str:
    order = [r["name"] for r in rows] + [n for n in results if n not in {r["name"] for r in rows}]
    out: list[str] = []
    for dataset, title in SECTIONS.items():
        names = [
            n
            for n in order
            if n in results and results[n].get("dataset", "fashion_mnist") == dataset and not n.startswith("xarch-")
        ]
        if not names:
            continue
        channels, side = (1, 28) if dataset == "fashion_mnist" else (3, 32)
        out += [
            f"**{title}**",
            "",
            "| row | method | IPC | stored values | accuracy (%) | published (ConvNet) | distill wall | evaluate wall |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in names:
            r = results[n]
            pub = PUBLISHED.get(n, "")
            dist = f"{r['distill_s'] / 60:.1f} min" if "distill_s" in r else "-"
            out.append(
                f"| {n} | {r['method']} | {r['ipc']} | {_stored(r, channels, side)} | {_acc(r['evaluation'])} "
                f"| {pub} | {dist} | {r['evaluate_s'] / 60:.1f} min |"
            )
        out.append("")
    xarch = [n for n in order if n in results and n.startswith("xarch-")]
    if xarch:
        models = XARCH_MODELS.split(",")
        out += [
            "**Cross-architecture (Fashion-MNIST IPC 10; the artifact of the named row)**",
            "",
            f"| row | method | {' | '.join(models)} | evaluate wall |",
            "|---|---|" + "---|" * len(models) + "---|",
        ]
        for n in xarch:
            r = results[n]
            accs = " | ".join(_acc(r["evaluation"], m) for m in models)
            out.append(f"| {n} | {r['method']} | {accs} | {r['evaluate_s'] / 60:.1f} min |")
        out.append("")
    return "\n".join(out)


def commands_block(results: dict, rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["Commands (as run; `python -m habacli` is `haba`):", "", "```"]
    for r in rows:
        if r["name"] not in results:
            continue
        res = results[r["name"]]
        where = ", ".join(str(x) for x in (res.get("cpu"), res.get("date")) if x)
        lines.append(f"# {r['name']}" + (f" ({where})" if where else ""))
        if res.get("note"):
            lines.append(f"# note: {res['note']}")
        lines += res.get("commands") or [f"{shown(c, args)}  # reconstructed" for c in row_commands(r, args)]
    lines += ["```", "", f"Machine: {cpu_model()}, {os.cpu_count()} CPUs; printed {datetime.date.today().isoformat()}."]
    return "\n".join(lines)


def listing(rows: list[dict], args: argparse.Namespace) -> str:
    out: list[str] = []
    if any(r["dataset"] == "cifar_fmnist" for r in rows):
        out += ["# the CIFAR-shaped folder, made once when missing:", shown(make_cifar_cmd(args), args), ""]
    if any(r["objective"] == "mtt" for r in rows):
        out += ["# the MTT rows' expert, made once when missing:", shown(experts_cmd(args), args), ""]
    for r in rows:
        shared = (
            f" (evaluates the artifact of {r['artifact_of']}; distils only if missing)" if "artifact_of" in r else ""
        )
        out.append(f"# {r['name']}: {r['method']}, IPC {r['ipc']}, {r['dataset']}{shared}")
        out += [shown(c, args) for c in row_commands(r, args)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/accuracy"), help="results.json and artifacts")
    ap.add_argument("--only", default="", help="comma list of row names (see --list)")
    ap.add_argument("--list", action="store_true", help="print the rows and their commands; run nothing")
    ap.add_argument("--report", action="store_true", help="print the tables of the results file; run nothing")
    ap.add_argument(
        "--results",
        type=Path,
        default=None,
        help="the results file (default: OUT/results.json, OUT/results-val.json with --split val); rows in it are"
        " skipped, so a table resumes, and processes with disjoint --only lists may share it",
    )
    ap.add_argument(
        "--iterations",
        type=int,
        default=None,
        help=f"distillation iterations of every row (default: {DM_ITERATIONS} for DM, {DSA_IPC1_ITERATIONS} / "
        f"{DSA_IPC10_ITERATIONS} for DSA at IPC 1 / 10, {MTT_ITERATIONS} / {MTT_IPC10_ITERATIONS} for MTT)",
    )
    ap.add_argument("--epochs", type=int, default=300, help="evaluation epochs per network")
    ap.add_argument("--runs", type=int, default=3, help="evaluation networks per row")
    ap.add_argument("--amp", choices=("off", "bf16"), default="off", help="--amp for every distill and evaluate")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the subprocesses")
    ap.add_argument(
        "--cifar-dir",
        type=Path,
        default=None,
        help="CIFAR-shaped Fashion-MNIST (default: OUT/cifar-fmnist, made when missing)",
    )
    ap.add_argument(
        "--cross-arch-haba",
        default="haba-dm-ipc10",
        help="the HaBa+DM row whose artifact the cross-architecture row evaluates (default: the default recipe's)",
    )
    ap.add_argument("--bf16", action="store_true", help="add the --amp bf16 rows (DM IPC 10, random IPC 10)")
    ap.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="score on the test split, or on the held-out validation split to choose recipes (OUT/results-val.json;"
        " the artifacts are shared)",
    )
    args = ap.parse_args(argv)
    args.cifar_dir = args.cifar_dir or args.out / "cifar-fmnist"
    all_rows = table(args)
    rows = selected(all_rows, args.only)
    if args.list:
        print(listing(rows, args))
        return
    path = args.results or args.out / ("results-val.json" if args.split == "val" else "results.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.report:
        print(markdown(results, all_rows))
        print(commands_block(results, all_rows, args))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:
        results = json.loads(path.read_text()) if path.exists() else {}
        if row["name"] in results:
            continue
        print(f"# {row['name']} ...", file=sys.stderr, flush=True)
        results = _record(path, row["name"], run_row(row, args, results))
        print(f"# {row['name']}: {_acc(results[row['name']]['evaluation'])}", file=sys.stderr, flush=True)
    print(markdown(results, all_rows))
    print(commands_block(results, all_rows, args))


if __name__ == "__main__":
    main()
