"""The one ``--amp`` check (torch-free, so option validation stays cheap): distill, experts and evaluate
all call :func:`check_amp`."""

from __future__ import annotations

from habacli.errors import ConfigError

#: what haba autocasts to; fp16 is refused (:data:`FP16_REFUSED`)
AMP_MODES: tuple[str, ...] = ("bf16",)
#: ``--amp auto``: bf16 where the device computes it natively, fp32 elsewhere
#: (:func:`habacli.runtime.device.resolve_amp`, once the device is known)
AUTO = "auto"
_OFF = (None, "", "none", "off")

FP16_REFUSED = (
    "--amp fp16 is not supported: haba has no loss scaling (GradScaler), so float16 gradients can underflow "
    "to zero; use --amp bf16"
)
"""The one-line refusal of ``--amp fp16`` by distill, experts and evaluate."""


def check_amp(amp: str | None) -> str | None:
    """``None`` for no autocast (``None``, ``""``, ``none``, ``off``), else ``amp`` when it is one of
    :data:`AMP_MODES` or :data:`AUTO` (resolved later, on the device, by
    :func:`habacli.runtime.device.resolve_amp`). Raises a one-line :class:`ConfigError`
    (fp16: :data:`FP16_REFUSED`)."""
    if amp in _OFF:
        return None
    if amp == "fp16":
        raise ConfigError(FP16_REFUSED)
    if amp != AUTO and amp not in AMP_MODES:
        raise ConfigError(f"--amp must be off, {AUTO} or {' or '.join(AMP_MODES)}, got {amp!r}")
    return amp
