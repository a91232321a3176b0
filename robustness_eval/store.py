"""The result store: one SQLite database per run directory (`results.sqlite`).

Tables:
- `meta`: the run's config and environment as JSON (written once; a resume compares it).
- `clean`: per target and point, whether the target classifies the clean point correctly.
- `rows`: one row per phase × target × attack × point attacked: success (verified), the three
  verification verdicts, ‖x' − x‖, queries, seconds, and the candidate itself as a compact
  float16/float32 blob where it broke.
- `chunks`: one row per finished chunk (the unit of commit): its loss trace and seconds, the
  (target, point) keys of the rows it wrote and a SHA-256 digest of those rows as stored.

A chunk's rows and its `chunks` row are committed in one transaction, so a crash never leaves
half a chunk; a resumed run skips every finished chunk and recomputes nothing. A finished chunk
whose rows are no longer all there as written (rows deleted or edited by hand, a copy gone
wrong) is not trusted: `chunk_done` drops it and what is left of its rows, says so, and the run
redoes it. Rows left without their chunk's mark are replaced when that chunk is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import torch

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clean (target TEXT, point INTEGER, correct INTEGER,
    PRIMARY KEY (target, point));
CREATE TABLE IF NOT EXISTS rows (
    phase TEXT, target TEXT, attack TEXT, point INTEGER,
    success INTEGER, in_ball INTEGER, in_bounds INTEGER, misclassified INTEGER,
    norm REAL, queries INTEGER, seconds REAL, adversarial BLOB,
    PRIMARY KEY (phase, target, attack, point));
CREATE TABLE IF NOT EXISTS chunks (
    phase TEXT, attack TEXT, chunk TEXT, targets TEXT, trace TEXT, seconds REAL, members TEXT, digest TEXT,
    PRIMARY KEY (phase, attack, chunk));
"""
ROW_FIELDS = "target, point, success, in_ball, in_bounds, misclassified, norm, queries, seconds, adversarial"


def _digest(rows: list[tuple]) -> str:
    """SHA-256 of rows read back from the store (ROW_FIELDS order), independent of their order."""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: (r[0], r[1])):
        digest.update(repr(row[:-1]).encode())
        digest.update(row[-1] or b"")
    return digest.hexdigest()

DB_NAME = "results.sqlite"


LOCK_NAME = ".lock"


class ConfigMismatchError(ValueError):
    """Raised when resuming a run with a config that differs from the stored one."""


class StoreBusyError(RuntimeError):
    """Raised when another live process holds the run directory's lock."""


def _blob(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().numpy().astype(np.float32).tobytes()


def _unblob(blob: bytes, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(blob, dtype=np.float32).copy()).reshape(shape)


def compare_configs(stored: dict, config: dict, directory, volatile: tuple[str, ...] = ("call", "versions")) -> None:
    """Raise ConfigMismatchError naming every key (but `volatile` ones) whose value differs."""
    config = json.loads(json.dumps(config))
    differ = _differences({k: v for k, v in stored.items() if k not in volatile},
                          {k: v for k, v in config.items() if k not in volatile})
    if differ:
        detail = "; ".join(f"{k}: stored {_short(old)}, now {_short(new)}" for k, (old, new) in differ.items())
        differ = list(differ)
        raise ConfigMismatchError(
            f"cannot resume {directory}: the run there has a different configuration ({', '.join(differ)} differ: "
            f"{detail}); rerun with the stored settings or choose another output directory")


def _differences(stored: dict, config: dict, prefix: str = "") -> dict[str, tuple]:
    """Every key whose value differs, nested dicts by dotted path ('shell_parameters.alpha')."""
    differ = {}
    for key in sorted(set(stored) | set(config)):
        old, new = stored.get(key), config.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differ.update(_differences(old, new, f"{prefix}{key}."))
        elif old != new:
            differ[f"{prefix}{key}"] = (old, new)
    return differ


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ResultStore:
    """Append-only, chunk-atomic storage of one run's per-point results."""

    def __init__(self, directory: str | Path | None) -> None:
        """Open (or create) the store in `directory`; None keeps it in memory.

        A directory store takes an exclusive lock (`flock`, released by the OS when the holder dies),
        so two runs never write the same directory at once.
        """
        self.directory = Path(directory) if directory is not None else None
        self._lock = None
        if self.directory is not None:
            if self.directory.exists() and not self.directory.is_dir():
                raise NotADirectoryError(f"{self.directory} exists and is not a directory; choose another "
                                         "output directory")
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / LOCK_NAME, "w")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.close()
                raise StoreBusyError(f"another run is writing {self.directory} (its lock is held); wait for it "
                                     "to finish or choose another output directory") from None
        self.path = self.directory / DB_NAME if self.directory is not None else ":memory:"
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(chunks)")}
            for column in ("members", "digest"):  # a store written before chunks recorded their rows
                if column not in columns:
                    self.db.execute(f"ALTER TABLE chunks ADD COLUMN {column} TEXT")
            self.db.commit()
        except sqlite3.DatabaseError as error:
            self._release()
            raise ValueError(f"{self.path} is not a readable result store ({error}); "
                             "remove it or choose another directory") from None

    @staticmethod
    def check_free(directory: str | Path) -> None:
        """Raise StoreBusyError if a live process holds `directory`'s lock (nothing is created)."""
        path = Path(directory) / LOCK_NAME
        if not path.exists():
            return
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusyError(f"another run is writing {directory} (its lock is held); wait for it to "
                                     "finish or choose another output directory") from None
            fcntl.flock(handle, fcntl.LOCK_UN)

    @classmethod
    def reader(cls, directory: str | Path) -> ResultStore:
        """Open an existing store read-only: no lock taken, nothing created (reports use this)."""
        store = cls.__new__(cls)
        store.directory, store._lock = Path(directory), None
        store.path = store.directory / DB_NAME
        if not store.path.is_file():
            raise FileNotFoundError(f"{store.path} does not exist")
        try:
            store.db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
            store.db.execute("SELECT 1 FROM meta LIMIT 1")
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{store.path} is not a readable result store ({error})") from None
        return store

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None

    def close(self) -> None:
        self.db.close()
        self._release()

    # --- config -------------------------------------------------------------------------------
    def config(self) -> dict | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        return json.loads(row[0]) if row else None

    def bind_config(self, config: dict, volatile: tuple[str, ...] = ()) -> None:
        """Store `config`, or check it equals the stored one (keys in `volatile` may differ)."""
        stored = self.config()
        config = json.loads(json.dumps(config))  # compare in the stored (JSON) form
        if stored is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config),))
            return
        compare_configs(stored, config, self.directory, volatile)

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- clean predictions -------------------------------------------------------------------
    def save_clean(self, target: str, correct: torch.Tensor) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO clean VALUES (?, ?, ?)",
                                [(target, i, int(c)) for i, c in enumerate(correct.tolist())])

    def load_clean(self, target: str, n: int) -> torch.Tensor | None:
        rows = self.db.execute("SELECT point, correct FROM clean WHERE target = ?", (target,)).fetchall()
        if len(rows) != n:
            return None
        correct = torch.zeros(n, dtype=torch.bool, device="cpu")
        for point, value in rows:
            correct[point] = bool(value)
        return correct

    # --- attack rows -------------------------------------------------------------------------
    def chunk_done(self, phase: str, attack: str, chunk: str) -> bool:
        """Whether the chunk finished and its rows are all there as written; a chunk that finished but lost
        or changed rows is dropped with a warning (with what is left of its rows), so the run redoes it."""
        row = self.db.execute("SELECT members, digest FROM chunks WHERE phase = ? AND attack = ? AND chunk = ?",
                              (phase, attack, chunk)).fetchone()
        if row is None:
            return False
        if row[0] is None:  # written before chunks recorded their rows: nothing to check against
            return True
        members = [tuple(m) for m in json.loads(row[0])]
        found = self._member_rows(phase, attack, members)
        if len(found) == len(members) and _digest(found) == row[1]:
            return True
        state = "they differ from what was written" if len(found) == len(members) else f"only {len(found)} are there"
        warnings.warn(f"{self.directory}: finished chunk {phase}/{attack}/{chunk} should hold {len(members)} rows "
                      f"but {state}; redoing that chunk", stacklevel=2)
        with self.db:
            self.db.execute("DELETE FROM chunks WHERE phase = ? AND attack = ? AND chunk = ?", (phase, attack, chunk))
            self.db.executemany("DELETE FROM rows WHERE phase = ? AND attack = ? AND target = ? AND point = ?",
                                [(phase, attack, target, point) for target, point in members])
        return False

    def _member_rows(self, phase: str, attack: str, members: list[tuple]) -> list[tuple]:
        rows = []
        for target, point in members:
            rows += self.db.execute(f"SELECT {ROW_FIELDS} FROM rows WHERE phase = ? AND attack = ? AND target = ? "
                                    "AND point = ?", (phase, attack, target, point)).fetchall()
        return rows

    def commit_chunk(self, phase: str, attack: str, chunk: str, records: list[tuple],
                     targets: list[str], trace: list[float], seconds: float) -> None:
        """Write a finished chunk's rows (replacing any left without their chunk's mark) and its marker, with the
        rows' keys and their digest as read back, in one transaction."""
        members = [(target, point) for target, point, *_ in records]
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(phase, target, attack, point, int(success), int(ball), int(bounds), int(wrong),
                  norm, queries, secs, _blob(adv) if adv is not None else None)
                 for target, point, success, ball, bounds, wrong, norm, queries, secs, adv in records])
            digest = _digest(self._member_rows(phase, attack, members))
            self.db.execute("INSERT INTO chunks (phase, attack, chunk, targets, trace, seconds, members, digest) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (phase, attack, chunk, json.dumps(targets), json.dumps(trace), seconds,
                             json.dumps(members), digest))

    def broken(self, phase: str, target: str) -> dict[int, str]:
        """Points broken so far in a phase, with the first attack (in commit order) that broke them."""
        rows = self.db.execute(
            "SELECT point, attack FROM rows WHERE phase = ? AND target = ? AND success = 1 ORDER BY rowid",
            (phase, target)).fetchall()
        first: dict[int, str] = {}
        for point, attack in rows:
            first.setdefault(point, attack)
        return first

    def unsteady(self, target: str) -> list[int]:
        """Points where a candidate was misclassified, in the ball and in bounds, yet not a break: a deterministic
        target answered differently when it was queried again."""
        rows = self.db.execute("SELECT DISTINCT point FROM rows WHERE target = ? AND success = 0 AND in_ball = 1 "
                               "AND in_bounds = 1 AND misclassified = 1 ORDER BY point", (target,)).fetchall()
        return [point for (point,) in rows]

    def rows(self, phase: str, target: str, attack: str) -> list[dict]:
        cursor = self.db.execute(
            "SELECT point, success, in_ball, in_bounds, misclassified, norm, queries, seconds "
            "FROM rows WHERE phase = ? AND target = ? AND attack = ? ORDER BY point",
            (phase, target, attack))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def traces(self, phase: str, attack: str) -> list[list[float]]:
        rows = self.db.execute("SELECT trace FROM chunks WHERE phase = ? AND attack = ? ORDER BY chunk",
                               (phase, attack)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def adversarial(self, phase: str, target: str, shape: tuple[int, ...]) -> dict[int, torch.Tensor]:
        rows = self.db.execute(
            "SELECT point, adversarial FROM rows WHERE phase = ? AND target = ? AND success = 1 "
            "ORDER BY rowid", (phase, target)).fetchall()
        found: dict[int, torch.Tensor] = {}
        for point, blob in rows:
            if point not in found and blob is not None:
                found[point] = _unblob(blob, shape)
        return found
