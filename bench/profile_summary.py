"""Summarise py-spy raw profiles (``bench/ingest.py --profile DIR``): where request time goes.

    .venv/bin/python bench/profile_summary.py /tmp/prof/single-*.txt

Only samples inside a request handler count (idle pool threads and the event loop waiting are
left out). Prints the share of request samples per stage (``STAGES``: the first rule matching
a sample's stack wins), then the functions with the most samples inclusive and the leaf frames.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

REQUEST = ("create_report (", "create_reports_batch (")
"""Frames that mark a sample as inside a request handler."""

STAGES: list[tuple[str, str]] = [
    ("outbox relay: publish to the broker", r"relay \(careloop/workflows/outbox.py:\d+\);publish"),
    ("outbox relay: hand-off to the relay thread", r"RelayThread.submit \("),
    (
        "commit",
        r"run_unit_of_work \(careloop/services/common/idempotency.py:\d+\);"
        r"[^;]*commit",
    ),
    ("find patients (SELECT)", r"find_patients \("),
    ("duplicate check (SELECT)", r"_existing_reports \("),
    ("create patients (INSERT + map)", r"create_patients \("),
    ("FHIR validation", r"check_resource \(|checked \(|validation.py"),
    ("FHIR mapping", r"map_scored_report|map_rating_report|map_provenance|careloop/fhir/"),
    ("store resources (INSERT)", r"ResourceStore.create_many \("),
    (
        "report rows (INSERT)",
        r"ingest_reports \(careloop/services/reports/service.py:\d+\);"
        r"Session.execute",
    ),
    ("report hash", r"report_hash \("),
    ("other ingest_reports", r"ingest_reports \("),
    ("parse/validate body", r"validate_python|_report.validate"),
    ("connection checkout", r"_checkout|Pool.connect|raw_connection"),
    ("other", r""),
]


def load(paths: list[Path]) -> Counter[str]:
    """Stack -> samples, over all files."""
    stacks: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def main() -> None:
    """Print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stacks = load(args.files)
    total = sum(stacks.values())
    inside = Counter({s: n for s, n in stacks.items() if any(m in s for m in REQUEST)})
    n_inside = sum(inside.values())
    print(f"{total:,} samples, {n_inside:,} inside a request handler")
    if not n_inside:
        return
    stages: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for stack, n in inside.items():
        name = next(name for name, rule in STAGES if re.search(rule, stack))
        stages[name] += n
        leaf = stack.rsplit(";", 1)[-1]
        if re.search(r"Connection.wait \(psycopg|do_execute|Condition.wait|_ModuleLock", leaf):
            waiting[name] += n
    print("\nstage (share of request samples; 'waiting': leaf is a DB round trip or a lock)")
    for name, n in stages.most_common():
        print(f"  {100 * n / n_inside:5.1f}%  {name:<42} waiting {100 * waiting[name] / n:5.1f}%")

    incl: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for stack, n in inside.items():
        frames = stack.split(";")
        leaves[frames[-1]] += n
        for frame in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            incl[frame] += n
    print(f"\ntop {args.top} functions, inclusive (share of request samples; frames on every")
    print("request's path, such as the server and framework, left out)")
    shown = [(f, n) for f, n in incl.most_common() if n < 0.97 * n_inside][: args.top]
    for frame, n in shown:
        print(f"  {100 * n / n_inside:5.1f}%  {frame}")
    print(f"\ntop {args.top} leaf frames (self)")
    for frame, n in leaves.most_common(args.top):
        print(f"  {100 * n / n_inside:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
