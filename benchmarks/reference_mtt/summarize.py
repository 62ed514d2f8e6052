"""Seconds per iteration and process wall time from the logs timing.sh writes.

Every log line starts with the stamper's seconds since launch (stamp.py). Iteration ends:
  reference (launch.py):  "MTTREF_T end it=<i>"      (after the optimizer steps of iteration i)
  haba (non-TTY progress): "distill <k>/<N> ..."     (k >= 1, emitted right after iteration k)
Iteration 1 is measured from the run's loop start ("MTTREF_T start it=0" / "distill 0/N"),
iteration i > 1 from the end of iteration i - 1. The figure is the median over iterations
3..N (warm-up excluded). Wall = STAMP_EOF (process launch to exit, start-up included).

Usage: python summarize.py [folder]   (default /work/mttref/timing)
"""

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FOLDER = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/mttref/timing")
LINE = re.compile(r"^\s*([\d.]+) (.*)$")
REF_START = re.compile(r"MTTREF_T start it=0 ")
REF_END = re.compile(r"MTTREF_T end it=(\d+) t=([\d.]+)")
HABA = re.compile(r"^distill (\d+)/(\d+)\b")
TIME_V = re.compile(r"TIME_V elapsed=([\d.]+) maxrss_kb=(\d+) user=([\d.]+) sys=([\d.]+)")


def parse(path: Path) -> dict:
    start, ends, wall, rss, cpu, internal = None, [], None, None, None, []
    kind = "?"
    for raw in path.read_text(errors="replace").splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        t, text = float(m.group(1)), m.group(2)
        if REF_START.search(text):
            kind, start = "reference", t
        elif e := REF_END.search(text):
            ends.append(t)
            internal.append(float(e.group(2)))
        elif h := HABA.match(text):
            kind = "haba"
            if int(h.group(1)) == 0:
                start = t
            else:
                ends.append(t)
        elif text.startswith("STAMP_EOF"):
            wall = t
        elif v := TIME_V.search(text):
            rss, cpu = int(v.group(2)) / 1024**2, float(v.group(3)) + float(v.group(4))
    per_it = []
    prev = start
    for t in ends:
        if prev is not None:
            per_it.append(t - prev)
        prev = t
    steady = per_it[2:]
    return {
        "kind": kind,
        "n": len(ends),
        "per_it": per_it,
        "median": statistics.median(steady) if steady else None,
        "minmax": (min(steady), max(steady)) if steady else None,
        "first": per_it[0] if per_it else None,
        "loop_start": start,
        "wall": wall,
        "rss_gb": rss,
        "cpu_s": cpu,
    }


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def main() -> None:
    env = FOLDER / "env.txt"
    if env.exists():
        print(env.read_text().strip())
        print()
    logs = sorted(FOLDER.glob("*.log"))
    if not logs:
        sys.exit(f"no logs in {FOLDER}")
    print(
        f"{'log':22} {'kind':9} {'its':>3} {'s/it med(3..N)':>14} {'min-max':>13} {'it1':>7} "
        f"{'start-up':>8} {'wall s':>7} {'CPU s':>7} {'RSS GB':>6}"
    )
    by_name = defaultdict(list)
    for p in logs:
        r = parse(p)
        name = p.stem.rsplit("_", 1)[0]
        by_name[name].append(r)
        mm = f"{r['minmax'][0]:.2f}-{r['minmax'][1]:.2f}" if r["minmax"] else "-"
        print(
            f"{p.name:22} {r['kind']:9} {r['n']:>3} {fmt(r['median'], '.3f'):>14} {mm:>13} {fmt(r['first']):>7} "
            f"{fmt(r['loop_start'], '.1f'):>8} {fmt(r['wall'], '.1f'):>7} {fmt(r['cpu_s'], '.1f'):>7} "
            f"{fmt(r['rss_gb']):>6}"
        )
    print()
    print("per configuration (all rounds):")
    meds = {}
    for name, rs in by_name.items():
        ms = [r["median"] for r in rs if r["median"] is not None]
        walls = [r["wall"] for r in rs if r["wall"] is not None]
        meds[name] = statistics.median(ms) if ms else None
        print(
            f"  {name:20} s/it {', '.join(f'{m:.3f}' for m in ms) or '-':24} wall {', '.join(f'{w:.0f}' for w in walls) or '-'}"
        )
    ref = [n for n, rs in by_name.items() if rs and rs[0]["kind"] == "reference"]
    if ref and meds.get(ref[0]):
        print()
        for name, m in meds.items():
            if name != ref[0] and m:
                print(f"  {ref[0]} / {name}: {meds[ref[0]] / m:.2f}x (s/it, median of rounds)")


if __name__ == "__main__":
    main()
