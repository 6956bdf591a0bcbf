"""CPU cost per call of the store's hot path: ``python -m tests.store.bench_store [N] [DATABASE_URL]``.

Not a test (timings depend on the machine): run it when changing the store and compare.
Measures ``time.process_time()`` (all threads of the process, so the SQLite worker threads are
included) over N sequential calls of each of: accept_message, history(limit=50) of a
100-message conversation, complete_turn with one reply. Without a URL: SQLite in a temporary
directory; a PostgreSQL URL must name an empty database.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from hearth.store import ConversationRepository, Database, NewMessage, PlainTextCodec, UserRepository, upgrade


async def bench(n: int, url: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            await upgrade(db)
            user = await UserRepository(db).create_user("bench")
            repo = ConversationRepository(db, PlainTextCodec())
            first = await repo.accept_message(conversation_id=None, user_id=user.id, channel="bench",
                                              external_ref=None, dedup_key="warm", text="hello")
            conversation_id = first.conversation.id
            for i in range(50):  # a 100-message conversation for history
                accepted = await repo.accept_message(conversation_id=conversation_id, user_id=user.id,
                                                     channel="bench", external_ref=None,
                                                     dedup_key=f"h{i}", text="question " * 20)
                await repo.complete_turn(accepted.message.id, [NewMessage("assistant", "answer " * 40)])
            other = (await repo.accept_message(conversation_id=None, user_id=user.id, channel="bench",
                                               external_ref=None, dedup_key="other", text="x")).conversation.id
            results: dict[str, float] = {}

            ids = []
            start = time.process_time()
            for i in range(n):
                accepted = await repo.accept_message(conversation_id=other, user_id=user.id, channel="bench",
                                                     external_ref=None, dedup_key=f"k{i}",
                                                     text="a question of about this length " * 4)
                ids.append(accepted.message.id)
            results["accept_message"] = (time.process_time() - start) / n

            start = time.process_time()
            for _ in range(n):
                rows = await repo.history(conversation_id, limit=50)
            results["history(limit=50)"] = (time.process_time() - start) / n
            assert len(rows) == 50

            reply = [NewMessage("assistant", "an answer of about this length " * 8)]
            start = time.process_time()
            for message_id in ids:
                await repo.complete_turn(message_id, reply)
            results["complete_turn"] = (time.process_time() - start) / n
            return results
        finally:
            await db.aclose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    url = sys.argv[2] if len(sys.argv) > 2 else None
    for name, seconds in asyncio.run(bench(n, url)).items():
        print(f"{name:20s} {seconds * 1e6:7.0f} µs CPU per call")


if __name__ == "__main__":
    main()
