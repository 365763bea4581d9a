"""The rollout log: one JSON object per line, appended and fsynced before each step is taken.

A rollout can stop anywhere (Ctrl-C, a crash, a lost CI runner). Because every step is written down
(and forced to disk) before it happens, the log always says which step may have been half-taken;
`--resume` repeats it (deployer calls are idempotent) and `--abort` undoes from there. A stack's
log keeps every rollout; the records after the last `start` are the current one.

A lock file next to the log (an exclusive `flock`, released by the kernel when the process ends,
however it ends) makes a second rollout of the same stack fail at once instead of interleaving.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

Record = dict[str, Any]


class RolloutBusy(Exception):
    """Another rollout of the same stack holds the lock."""


class RolloutLog:
    """`<directory>/<stack>.jsonl` and its lock `<directory>/<stack>.lock`."""

    def __init__(self, directory: Path, stack: str) -> None:
        self.stack = stack
        self.path = directory / f"{stack}.jsonl"
        self.lock_path = directory / f"{stack}.lock"

    def append(self, record: Record) -> Record:
        """Write one record durably (flush + fsync) and return it with its timestamp."""
        stamped = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(stamped, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        return stamped

    def records(self) -> list[Record]:
        """Every record, oldest first. A torn last line (the process died mid-write) is ignored:
        the step it announced was never taken."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records: list[Record] = []
        for number, line in enumerate(lines, start=1):
            try:
                value = json.loads(line)
            except ValueError:
                if number == len(lines):
                    break
                raise ValueError(f"{self.path}:{number}: not a JSON record; the rollout log is damaged") from None
            records.append(cast(Record, value))
        return records

    def current(self) -> list[Record]:
        """The records of the latest rollout (from its `start`), or [] when there never was one."""
        records = self.records()
        starts = [i for i, r in enumerate(records) if r.get("type") == "start"]
        return records[starts[-1] :] if starts else []

    @contextmanager
    def locked(self) -> Generator[None]:
        """Hold the stack's rollout lock, or raise RolloutBusy naming who holds it."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a+", encoding="utf-8") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise RolloutBusy(
                    f"a rollout of stack {self.stack} is in progress ({holder}); wait for it to finish"
                ) from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
            lock.flush()
            try:
                yield
            finally:
                lock.seek(0)
                lock.truncate()
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
