"""Summarise py-spy collapsed stacks (``py-spy record --format raw``, as ``run.py --profile``
writes them): where the server's CPU time goes, by function and by module.

    python bench/profile_summary.py bench/results/<stamp>-profiles/read.collapsed [--top 25]

Inclusive time counts a function once per sample in which it is on the stack; self time
only when it is the innermost frame. Percentages are of the samples of the file (py-spy
skips idle samples, so 100 % is the time the server was on the CPU; samples of idle
executor threads that py-spy still reports are dropped unless --keep-idle).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Innermost frames of threads that are waiting, not working, which py-spy may still
# report as active (e.g. the idle thread of asyncio.to_thread's executor).
IDLE = (
    "_worker (concurrent/futures/thread.py:81)",
    "wait (threading.py:",
    "_wait_for_tstate_lock (threading.py:",
)


def parse(path: Path, keep_idle: bool = False) -> list[tuple[list[str], int]]:
    stacks = []
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not keep_idle and any(marker in frames[-1] for marker in IDLE):
            continue
        stacks.append((frames, int(count)))
    return stacks


def short_file(name: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in name:
            return name.split(marker, 1)[1]
    return name


def frame_key(frame: str) -> tuple[str, str]:
    found = FRAME.match(frame)
    if not found:
        return frame, ""
    return found["func"], short_file(found["file"])


def module_of(file: str) -> str:
    if file.startswith("app/"):
        return file
    return file.split("/", 1)[0]


def summarise(path: Path, top: int, match: str | None, keep_idle: bool = False) -> None:
    stacks = parse(path, keep_idle)
    total = sum(c for _, c in stacks)
    if not total:
        print(f"{path}: no sample")
        return
    inclusive: Counter[tuple[str, str]] = Counter()
    own: Counter[tuple[str, str]] = Counter()
    modules: Counter[str] = Counter()
    for frames, count in stacks:
        keys = [frame_key(f) for f in frames]
        for key in set(keys):
            inclusive[key] += count
        own[keys[-1]] += count
        modules[module_of(keys[-1][1])] += count
    print(f"== {path.name}: {total} samples")

    def show(title: str, counter: Counter[tuple[str, str]]) -> None:
        print(f"-- {title}")
        shown = 0
        for (func, file), n in counter.most_common():
            if match and match not in file:
                continue
            print(f"{100 * n / total:6.1f}%  {func}  ({file})")
            shown += 1
            if shown >= top:
                break

    show("inclusive", inclusive)
    show("self", own)
    print("-- self time by module (innermost frame)")
    for module, n in modules.most_common(top):
        print(f"{100 * n / total:6.1f}%  {module}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise py-spy collapsed stacks")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only functions whose file contains this")
    parser.add_argument(
        "--keep-idle", action="store_true", help="keep samples of idle executor threads"
    )
    args = parser.parse_args()
    for path in args.files:
        summarise(path, args.top, args.match, args.keep_idle)


if __name__ == "__main__":
    main()
