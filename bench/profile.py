"""Profile cancelq's hot path: ``python -m bench.profile [--seconds 8] [--pool threads]``.

One worker under a steady load (limits not binding) is sampled with py-spy (all threads, idle
frames dropped); prints the functions with the most samples inclusive (where time goes, by
stage) and self (what to optimise), written to ``bench/out/profile.txt`` with the raw stacks.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench import load
from bench.context import make_bench_keys
from bench.stack import Stack

HERE = Path(__file__).resolve().parent
POOLS = {
    "threads": ("--pool", "threads", "--concurrency", "8"),
    "prefork": ("--pool", "prefork", "--concurrency", "2"),
}


def summarise(raw: str, top: int = 25) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f.strip() for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "inclusive (project frames):"]
    project = [
        (f, c)
        for f, c in inclusive.most_common()
        if "/work/" in f or "(worker/" in f or "worker/" in f or "cancelq/" in f
    ]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in project[:top]]
    lines += ["", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pool", choices=sorted(POOLS), default="threads")
    parser.add_argument("--rate", type=float, default=300.0, help="cancels/s offered")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(list(argv))
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    keys = make_bench_keys(many=1)
    args.out.mkdir(parents=True, exist_ok=True)
    raw_path = args.out / "profile.raw"
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp), keys.all()) as stack:
        stack.reset(rate_limits=False)
        count = int(args.rate * (args.seconds + 3))
        links = load.place_orders(stack, keys.free, count)
        with stack.workers("cancelq", 1, POOLS[args.pool]) as ws:
            plan = [(keys.free, link) for link in links]
            feeder = threading.Thread(target=load.paced, args=(stack, plan, args.rate))
            feeder.start()
            time.sleep(1.0)
            cmd = [
                spy,
                "record",
                "--pid",
                str(ws.pids[0]),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw_path),
                "--nonblocking",
            ]
            if args.pool == "prefork":
                cmd.append("--subprocesses")
            subprocess.run(cmd, check=True, capture_output=True, timeout=args.seconds + 60)
            feeder.join(timeout=args.seconds + 30)
    text = summarise(raw_path.read_text())
    (args.out / "profile.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
