"""`haba distill`: HaBa (bases x hallucinators) on top of DC, DSA, DM or MTT, the plain baseline, or INFER."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from habacli.cli.options import DataDirOption, DeviceOption, JsonOption, QuietOption
from habacli.cli.progress import ProgressRenderer
from habacli.errors import ConfigError, UnknownNameError

EPILOG = (
    "Examples:\n\n"
    "  haba distill fashion_mnist --ipc 1 --baseline dm --preset quick --out fm-dm-ipc1.safetensors\n\n"
    "  haba distill cifar10 --ipc 10 --baseline mtt --hallucinators 5 --out c10.safetensors\n\n"
    "  haba distill cifar10 --ipc 10 --baseline dm --no-factorize --out c10-dm-plain.safetensors\n\n"
    "  haba distill cifar10 --ipc 10 --baseline dm --out c10.safetensors --resume\n\n"
    "  haba distill fashion_mnist --ipc 10 --method infer --preset quick --out fm-infer.safetensors"
)


def _parse_set(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as TOML scalars (numbers, booleans, strings)."""
    import tomllib  # lazy: its regexes cost ~5 ms of every `haba --help`

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw.strip()
    return out


def distill_command(
    dataset: Annotated[
        str, typer.Argument(help="Dataset name (see `haba datasets`), imagefolder:PATH or hf:ORG/NAME.")
    ],
    ipc: Annotated[int, typer.Option("--ipc", help="The baseline's images per class (the storage budget).")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="haba (bases x hallucinators trained with the --baseline objective) or infer (natural images + "
            "inter-class feature compensators + teacher soft labels; --baseline does not apply).",
        ),
    ] = "haba",
    baseline: Annotated[
        str, typer.Option("--baseline", "-b", help="Objective of --method haba: dc, dsa, dm or mtt (HaBa + it).")
    ] = "dm",
    teachers: Annotated[
        Path | None,
        typer.Option(
            "--teachers",
            help="INFER: teacher folder (default: $HABA_CACHE/teachers or ./teachers); trained first when empty "
            "(see `haba teachers`).",
            rich_help_panel="INFER",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Artifact path (default: DATASET-BASELINE-ipcN.safetensors).")
    ] = None,
    hallucinators: Annotated[
        int | None, typer.Option("--hallucinators", "-k", help="K hallucinators shared by all classes (paper: 5).")
    ] = None,
    factorize: Annotated[
        bool,
        typer.Option(
            "--factorize/--no-factorize", help="--no-factorize: the plain baseline (K = 0), same artifact format."
        ),
    ] = True,
    single_channel: Annotated[
        bool | None, typer.Option("--single-channel", help="1-channel bases.", show_default=False)
    ] = None,
    base_scale: Annotated[
        int | None,
        typer.Option(
            "--base-scale",
            help="Bases at 1/N of the image size, upsampled before the hallucinators: N^2 times as many bases "
            "for the same storage (IDC-style; format 1.1). 0: auto, half size while bases keep >= 14 px a side "
            "and never under ZCA (HaBa+DM and HaBa+DSA presets).",
        ),
    ] = None,
    init: Annotated[
        str | None, typer.Option("--init", help="real (images of the class, model space) or noise.")
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option("--budget", help="paper (ipc bases/class + hallucinators) or matched (fit C*ipc*c*h*w)."),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option("--iterations", "-n", help="Outer iterations (default: the preset's).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of every random draw (default 0).")] = None,
    device: DeviceOption = None,
    data_dir: DataDirOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of options (CLI > file > preset).")] = None,
    preset: Annotated[
        str, typer.Option("--preset", help="paper (published hyper-parameters) or quick (minutes on a CPU).")
    ] = "paper",
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", help="Validate every N iterations on the held-out split (0: off).")
    ] = None,
    eval_epochs: Annotated[int | None, typer.Option("--eval-epochs", help="Epochs of each validation network.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Checkpoint every N iterations (0: off).")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option("--log-every", help="Plain progress line every N iterations (non-TTY).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's checkpoint.")] = False,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Checkpoint path (default: next to --out).")
    ] = None,
    amp: Annotated[
        str | None,
        typer.Option(
            "--amp",
            help="off, bf16 or auto (bf16 where this CPU/GPU computes it natively, else fp32): autocast the real-image forwards, HaBa's adversary passes and MTT's student steps (fp16 is refused: no loss scaling).",
        ),
    ] = None,
    compile_: Annotated[
        bool | None,
        typer.Option(
            "--compile",
            help="torch.compile the network calls, and fuse the instance norm's double backward (MTT, DC).",
            show_default=False,
        ),
    ] = None,
    experts: Annotated[
        str | None,
        typer.Option(
            "--experts",
            help="MTT: folder of expert trajectories, or 'auto' to train a small set first.",
            rich_help_panel="MTT",
        ),
    ] = None,
    mtt_memory: Annotated[
        str | None,
        typer.Option(
            "--mtt-memory",
            help="MTT: auto (default: unrolled unless its measured size would not fit in the free memory, then constant), unrolled (keeps every student step) or constant (exact gradient, memory independent of syn_steps).",
            rich_help_panel="MTT",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other option, KEY=VALUE (repeatable), e.g. --set batch_real=64."),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Distill DATASET into bases and hallucinators (HaBa) with a DC, DSA, DM or MTT objective."""
    from habacli import api  # lazy: haba --help never loads the library
    from habacli.distill.config import PRESETS  # lazy: haba --help never loads the library

    if method not in ("haba", "infer"):
        raise UnknownNameError("method", method, ["haba", "infer"])
    if method == "infer":
        ignored = [
            flag
            for flag, value in (
                ("--baseline", None if baseline == "dm" else baseline),
                ("--hallucinators", hallucinators),
                ("--no-factorize", None if factorize else False),
                ("--single-channel", single_channel),
                ("--base-scale", base_scale),
                ("--init", init),
                ("--budget", budget),
                ("--config", config),
                ("--eval-every", eval_every),
                ("--checkpoint-every", checkpoint_every),
                ("--amp", amp),
                ("--compile", compile_),
                ("--experts", experts),
                ("--mtt-memory", mtt_memory),
                ("--set", set_ or None),
            )
            if value is not None
        ]
        if ignored:
            raise ConfigError(f"{', '.join(ignored)} do(es) not apply to --method infer (options of --method haba)")
        _distill_infer(
            dataset,
            ipc,
            out,
            teachers,
            preset,
            iterations,
            seed,
            device,
            data_dir,
            resume,
            checkpoint,
            eval_epochs,
            as_json,
            quiet,
            log_every,
        )
        return
    if teachers is not None:
        raise ConfigError("--teachers only applies to --method infer")
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, PRESETS)
    options = _parse_set(set_)
    if (experts is not None or mtt_memory is not None) and baseline.lower() != "mtt":
        raise ConfigError("--experts and --mtt-memory only apply to --baseline mtt")
    for key, value in (
        ("eval_every", eval_every),
        ("eval_epochs", eval_epochs),
        ("checkpoint_every", checkpoint_every),
        ("log_every", log_every),
        ("amp", amp),
        ("compile", compile_),
        ("experts", experts),
        ("memory", mtt_memory),
        ("base_scale", base_scale),
    ):
        if value is not None:
            options[key] = value
    if out is None:
        out = Path(f"{dataset.replace(':', '_').replace('/', '_')}-{baseline}-ipc{ipc}.safetensors")
    with ProgressRenderer(quiet=quiet or as_json and not sys.stderr.isatty(), log_every=log_every) as render:
        result = api.distill(
            dataset,
            ipc=ipc,
            baseline=baseline,
            out=out,
            hallucinators=hallucinators,
            factorize=factorize,
            single_channel=single_channel,
            init=init,
            budget=budget,
            iterations=iterations,
            seed=seed,
            device=device,
            data_dir=data_dir,
            preset=preset,
            config_file=config,
            options=options,
            resume=resume,
            checkpoint=checkpoint,
            progress=render,
        )
    summary = result.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    storage = result.storage
    best = (
        ""
        if result.best_val_acc is None
        else f", best val acc {result.best_val_acc * 100:.2f}% (it {result.best_iteration})"
    )
    typer.echo(f"wrote {result.artifact_path}: {result.iterations} iterations in {result.wall_time:.1f}s{best}")
    typer.echo(
        f"storage: {storage['total_values']} values = {storage['total_values'] / storage['baseline_values']:.2f}x "
        f"the baseline's {storage['baseline_values']} ({storage['bases_per_class']} bases/class, "
        f"{storage['hallucinator_values']} in hallucinators)"
    )


def _distill_infer(
    dataset: str,
    ipc: int,
    out: Path | None,
    teachers: Path | None,
    preset: str,
    iterations: int | None,
    seed: int | None,
    device: str | None,
    data_dir: Path | None,
    resume: bool,
    checkpoint: Path | None,
    eval_epochs: int | None,
    as_json: bool,
    quiet: bool,
    log_every: int | None,
) -> None:
    """``haba distill --method infer``: teachers (reused or trained), UFCs with a checkpoint each, the artifact."""
    from habacli import api  # lazy: haba --help never loads the library

    if out is None:
        out = Path(f"{dataset.replace(':', '_').replace('/', '_')}-infer-ipc{ipc}.safetensors")
    with ProgressRenderer(quiet=quiet or as_json and not sys.stderr.isatty(), log_every=log_every) as render:
        result = api.distill_infer(
            dataset,
            ipc,
            out=out,
            teachers_dir=teachers,
            preset=preset,
            iterations=iterations,
            eval_epochs=eval_epochs,
            seed=seed,
            device=device,
            data_dir=data_dir,
            resume=resume,
            checkpoint=checkpoint,
            progress=render,
        )
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    st = result.storage
    typer.echo(
        f"wrote {result.artifact_path}: INFER, {result.subsets} subsets x {len(result.teachers)} UFCs "
        f"({result.iterations} iterations each) in {result.wall_time:.1f}s"
    )
    typer.echo(
        f"storage: {st['full_total']} values = {st['full_ratio']:.3f}x the baseline's {st['baseline']} "
        f"(natural images {st['bases']}, compensators {st['compensators']}, soft labels {st['instance_soft_labels']})"
    )


def register(app: typer.Typer) -> None:
    """Add ``haba distill`` to the app."""
    app.command("distill", epilog=EPILOG)(distill_command)
