"""The data-only pickle reader behind CIFAR's python batches: same data as pickle, no code, no pickle import."""

from __future__ import annotations

import os
import pickle  # the tests write pickles; the package never imports this module
from pathlib import Path

import numpy as np
import pytest

from habacli.data.cifar import _ALLOWED
from habacli.data.inert_pickle import PickleDataError, RefusedGlobal, load_data_checked

DATA = {
    b"batch_label": b"training batch 1 of 5",
    b"labels": [0, 9, 3, -1, 2**40],
    "f": 0.25,
    "t": (1, None, True),
    "u": "caf\u00e9",
    "nested": {"x": [[], {}, ()]},
    "big": -(2**100),
}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_plain_data_matches_pickle_at_every_protocol(protocol):
    blob = pickle.dumps(DATA, protocol=protocol)
    assert load_data_checked(blob, _ALLOWED) == pickle.loads(blob)


def test_python2_strings_come_back_as_bytes():
    # what Python 2's cPickle writes for a str (STRING, SHORT_BINSTRING, BINSTRING), as encoding='bytes' reads it
    assert load_data_checked(b"S'ab\\ncd'\np0\n.", _ALLOWED) == b"ab\ncd"
    assert load_data_checked(b"\x80\x02U\x03abcq\x00.", _ALLOWED) == b"abc"
    assert load_data_checked(b"\x80\x02T\x03\x00\x00\x00xyzq\x00.", _ALLOWED) == b"xyz"


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_arrays_decode_through_the_stand_ins(protocol):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = load_data_checked(pickle.dumps({b"data": arr, b"labels": [1, 2]}, protocol=protocol), _ALLOWED)
    assert np.array_equal(out[b"data"].to_numpy(), arr) and out[b"labels"] == [1, 2]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/haba-inert-pwned",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_is_refused_not_run(protocol):
    with pytest.raises(RefusedGlobal, match="refusing to load"):
        load_data_checked(pickle.dumps([1, _Evil()], protocol=protocol), _ALLOWED)
    assert not Path("/tmp/haba-inert-pwned").exists()


@pytest.mark.parametrize("blob", [b"", b"\x80\x02]q\x00(K\x01", b"not a pickle", b"\x80\x02\xff.", b"\x80\x02N0."])
def test_malformed_streams_raise(blob):
    with pytest.raises(PickleDataError):
        load_data_checked(blob, _ALLOWED)


def test_the_package_never_imports_pickle():
    root = Path(__file__).resolve().parents[1] / "habacli"
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        if any(
            line.strip().startswith(("import pickle", "from pickle", "import cPickle", "import dill"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
