"""The rollout log: one JSON object per line, appended and fsynced before each step is taken.

A rollout can stop anywhere (Ctrl-C, a crash, a lost CI runner). Because every step is written down
(and forced to disk) before it happens, the log always says which step may have been half-taken;
`--resume` repeats it (deployer calls are idempotent) and `--abort` undoes from there. A stack's
log keeps every rollout; the records after the last `start` are the current one.

Every record is checked on read (`records.py`): a damaged or incomplete line stops the command with
RolloutLogDamaged, naming the line and what to do, instead of a traceback halfway through a step.
`--abort` still works then (`salvage`): it keeps the records before the damage, on which rolling back
relies only for the rollout's start (regions, old and new revisions); what each region serves is read
from the deployer's real weights.

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

from llmfleet.infra.rollout.records import record_problem, sequence_problem

Record = dict[str, Any]


class RolloutLogDamaged(Exception):
    """A record of the log is not one the engine wrote (damaged, incomplete or out of place)."""

    def __init__(self, path: Path, line: int, problem: str, valid: list[Record]) -> None:
        self.path = path
        self.line = line
        self.valid = valid
        """The records before the damaged line."""
        super().__init__(
            f"{path}:{line}: the rollout log is damaged ({problem}). Restore the log from a good copy (e.g. the "
            f"CI bucket's) and run again, or run `llmfleet rollout --abort`: it keeps the records before line "
            f"{line}, moves the damaged log aside and takes every region of the rollout back to the old revision "
            "from what each region really serves"
        )


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
        """Every record, oldest first, each checked. A torn last line (the process died mid-write) is
        ignored: the step it announced was never taken. Anything else wrong raises RolloutLogDamaged."""
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
                raise RolloutLogDamaged(self.path, number, "not a JSON record", records) from None
            problem = record_problem(value)
            if problem is None:
                records.append(cast(Record, value))
                problem = sequence_problem(records, len(records) - 1)
                if problem is not None:
                    records.pop()
            if problem is not None:
                raise RolloutLogDamaged(self.path, number, problem, records)
        return records

    def salvage(self) -> Path | None:
        """Keep the records before the first damaged line: the damaged log moves to
        `<stack>.jsonl.damaged-<time>` and the log restarts with those records. Returns where the damaged
        log went, or None when the log was sound (nothing is changed then)."""
        try:
            self.records()
        except RolloutLogDamaged as damage:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
            self.path.rename(aside)
            with self.path.open("w", encoding="utf-8") as out:
                out.writelines(json.dumps(r, sort_keys=True) + "\n" for r in damage.valid)
                out.flush()
                os.fsync(out.fileno())
            return aside
        return None

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
