"""How long the template matcher takes to read a message, with hearth's built-in skills loaded.

Matching runs on the event loop before any model is asked, so it must stay in the milliseconds whatever
the message: typical requests, a long one, a message no skill takes, and messages built to make the
search expensive (a date word repeated, many date-and-time phrases). Writes ``bench/MATCHER.md``.

    python bench/matcher.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from pathlib import Path

from hearth.skills.loader import builtin_classes, manifest_of
from hearth.skills.registry import LoadedSkill, SkillRegistry
from hearth.types import Actor

MESSAGES = {
    "reminder": "remind me in half an hour to check the oven",
    "meeting": "book a meeting on friday at 11 for 1h30",
    "asks (slot missing)": "remind me to call mum",
    "for the model": "what is the capital of france",
    "long request (30 words)": "schedule a meeting tomorrow at 3pm for half an hour at the office with Ana and Bob "
                               "about the quarterly review of the budget and the plans for next year",
    "long text slot (66 words)": "remind me to " + "call mum and dad and " * 12 + "tomorrow at 5",
    "a date word x40": "book a meeting " + " ".join(["tomorrow"] * 40),
    "date phrases x14": "schedule " + " ".join(["at 5 on friday"] * 14),
}


class _NotRun:
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def registry() -> SkillRegistry:
    skills = SkillRegistry(repository=None, contexts=None)  # type: ignore[arg-type]  # match() uses neither
    for source, cls in builtin_classes():
        assert isinstance(cls, type)
        skills.add(LoadedSkill(manifest_of(cls, source), _NotRun(), "builtin", source))  # type: ignore[arg-type]
    return skills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("MATCHER.md"))
    args = parser.parse_args()
    skills = registry()
    actor = Actor(1, "bench", frozenset({"user"}), channel="bench", timezone="Europe/Oslo")
    now = datetime.fromisoformat("2026-05-12T09:00:00+02:00")
    rows = ["| message | words | median ms | max ms | outcome |", "|---|---:|---:|---:|---|"]
    for label, text in MESSAGES.items():
        times = []
        found = None
        for _ in range(args.repeat):
            started = time.perf_counter()
            found = skills.match(text, actor, now=now)
            times.append((time.perf_counter() - started) * 1000)
        outcome = "model" if found is None else f"{found.tool} ({found.confidence:.2f})"
        rows.append(f"| {label} | {len(text.split())} | {statistics.median(times):.1f} | {max(times):.1f} | "
                    f"{outcome} |")
    table = "\n".join(rows)
    args.out.write_text(f"# Template matcher timings\n\n{args.repeat} runs each, built-in skills.\n\n{table}\n",
                        encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
