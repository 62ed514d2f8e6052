"""Prefix every line of stdin with seconds since this stamper started (the run's launch).

timing.sh starts it together with the timed process (`cmd 2>&1 | stamp.py LOG`), so the stamps are
outside measurements of when each line came out; PYTHONUNBUFFERED=1 makes the lines come out at once.
Last line: "STAMP_EOF" when the pipe closes (= the process's wall time, start-up included).
"""

import sys
import time

t0 = time.perf_counter()
out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
out.write(f"{0.0:10.3f} STAMP_START wall={time.time():.3f}\n")
for raw in sys.stdin.buffer:
    line = raw.decode("utf-8", "replace").rstrip("\n").split("\r")[-1]  # keep tqdm's last redraw only
    out.write(f"{time.perf_counter() - t0:10.3f} {line}\n")
    out.flush()
out.write(f"{time.perf_counter() - t0:10.3f} STAMP_EOF\n")
out.close()
