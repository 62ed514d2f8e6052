"""CIFAR-10/100 in the official archives' layouts (torchvision's root): the binary version
(``cifar-10-batches-bin``, ``cifar-100-binary``; preferred, plain bytes) or the python version
(``cifar-10-batches-py``, ``cifar-100-python``).

The python batches are pickles. haba never unpickles them and never imports :mod:`pickle`: the stream is
decoded by :mod:`habacli.data.inert_pickle`, a data-only reader whose only globals are the names a pickled
numpy array refers to, resolved to inert stand-ins that record the array's dtype, shape and raw bytes (plus
``_codecs.encode`` restricted to latin-1 text -> bytes, which Python 3 protocol-2 pickles use for bytes).
Anything else (``os.system``, ``builtins.eval``, ...) raises :class:`DataNotFoundError`, so a tampered
file cannot execute code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli.data.inert_pickle import PickleDataError, load_data_checked
from habacli.data.layouts import LAYOUTS, Files, Layout
from habacli.errors import DataNotFoundError

if TYPE_CHECKING:
    import numpy as np

    from habacli.data.spec import DatasetSpec

_NAMES = {
    "cifar10": {
        "bin": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]),
        "py": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    },
    "cifar100": {
        "bin": ("cifar-100-binary", ["train.bin"], ["test.bin"]),
        "py": ("cifar-100-python", ["train"], ["test"]),
    },
}


def find(spec: DatasetSpec, root: Path) -> Files | None:
    """Prefer the binary batches; accept the python ones; ``root`` may be the batches folder itself."""
    for kind in ("bin", "py"):
        folder, train, test = _NAMES[spec.layout][kind]
        for d in (root / folder, root):
            if all((d / n).is_file() for n in train + test):
                return {"train": [d / n for n in train], "test": [d / n for n in test]}
    return None


def expect(spec: DatasetSpec, root: Path) -> str:
    """Which files to put where."""
    b, p = _NAMES[spec.layout]["bin"], _NAMES[spec.layout]["py"]
    return (
        f"extract the official archive into {root}/ so that {root}/{b[0]}/ holds {', '.join(b[1] + b[2])} "
        f"(binary version) or {root}/{p[0]}/ holds {', '.join(p[1] + p[2])} (python version)"
    )


# --- data-only reading of the python version -------------------------------------------------


class _Dtype:
    """Stand-in for ``numpy.dtype``: remembers the type string (e.g. 'u1', 'i8')."""

    def __init__(self, name: Any = "u1", *_args: Any):
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.byteorder = "|"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1:
            bo = state[1]
            self.byteorder = bo.decode() if isinstance(bo, bytes) else str(bo)


class _Array:
    """Stand-in for ``numpy.ndarray``: remembers shape, dtype and raw bytes."""

    def __init__(self, *_args: Any):
        self.shape: tuple[int, ...] = ()
        self.dtype: _Dtype | None = None
        self.data: bytes = b""
        self.fortran = False

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise DataNotFoundError("unexpected array state in a CIFAR python batch")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray, str)):
            raise DataNotFoundError("unexpected array payload in a CIFAR python batch")
        self.shape = tuple(int(s) for s in shape)
        self.dtype, self.fortran = dtype, bool(fortran)
        self.data = raw.encode("latin1") if isinstance(raw, str) else bytes(raw)

    def to_numpy(self) -> np.ndarray:
        import numpy as np  # lazy: numpy

        dt = np.dtype(self.dtype.name if self.dtype else "u1")
        if dt.kind not in "biuf":
            raise DataNotFoundError(f"unexpected array dtype {dt.str!r} in a CIFAR python batch")
        if self.dtype and self.dtype.byteorder in "<>":
            dt = dt.newbyteorder(self.dtype.byteorder)
        arr = np.frombuffer(self.data, dtype=dt)
        if arr.size != int(np.prod(self.shape)):
            raise DataNotFoundError("array size mismatch in a CIFAR python batch")
        return arr.reshape(self.shape, order="F" if self.fortran else "C")


def _reconstruct(_cls: Any, _shape: Any = None, _dtype: Any = None) -> _Array:
    return _Array()


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes in protocol-2 pickles; strings in, bytes out, nothing else."""
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.replace("-", "") != "latin1":
        raise DataNotFoundError("unexpected _codecs.encode call in a CIFAR python batch")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _Dtype,
}


def read_python_batch(path: Path) -> dict[str, Any]:
    """Read one CIFAR python batch without executing anything in it -> ``{str key: value}``."""
    try:
        obj = load_data_checked(path.read_bytes(), _ALLOWED)
    except DataNotFoundError as e:  # raised by a stand-in on an unexpected payload
        raise DataNotFoundError(f"{path}: {e}") from None
    except PickleDataError as e:
        if "refusing" in str(e):
            raise DataNotFoundError(f"{path}: {e}") from None
        raise DataNotFoundError(f"{path} is not a readable CIFAR python batch ({e})") from None
    if not isinstance(obj, dict):
        raise DataNotFoundError(f"{path} is not a CIFAR python batch (no dict inside)")
    # keys are ASCII in a real batch; anything else decodes to a name that matches nothing
    return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _read_python(spec: DatasetSpec, path: Path) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np  # lazy: numpy

    d = read_python_batch(path)
    key = "labels" if spec.layout == "cifar10" else "fine_labels"
    if "data" not in d or key not in d or not isinstance(d["data"], _Array):
        raise DataNotFoundError(f"{path} has no 'data' array and {key!r} list")
    try:
        data = d["data"].to_numpy().astype(np.uint8, copy=False).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as e:  # a dtype, shape or label list no CIFAR batch has
        raise DataNotFoundError(f"{path} is not a CIFAR python batch ({type(e).__name__}: {str(e)[:80]!r})") from None
    return data, labels


def _read_binary(spec: DatasetSpec, path: Path) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np  # lazy: numpy

    head = 1 if spec.layout == "cifar10" else 2  # cifar-100 records: coarse label, fine label
    raw = np.fromfile(path, dtype=np.uint8)
    rec = head + 3 * 32 * 32
    if raw.size % rec:
        raise DataNotFoundError(f"{path} is truncated: {raw.size} bytes is not a multiple of {rec}")
    raw = raw.reshape(-1, rec)
    return raw[:, head:].reshape(-1, 3, 32, 32), raw[:, head - 1].astype(np.int64)


def read(spec: DatasetSpec, files: list[Path], split: str, size: tuple[int, int] | None) -> tuple:
    """Decode the batches of one split -> uint8 ``[N, 3, 32, 32]``, int64 labels."""
    import numpy as np  # lazy: numpy

    parts = [(_read_binary if f.suffix == ".bin" else _read_python)(spec, f) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataNotFoundError(f"{files[0].parent}: labels outside 0..{spec.num_classes - 1}")
    return images, labels


LAYOUTS.add("cifar10", Layout("cifar10", find, expect, read))
LAYOUTS.add("cifar100", Layout("cifar100", find, expect, read))
