"""The result store: one SQLite database per run directory (`results.sqlite`).

Tables:
- `meta`: the run's config and environment as JSON (written once; a resume compares it), the cached
  extras, and `digest`: the store's own digest (below).
- `clean`: per target and point, whether the target classifies the clean point correctly.
- `rows`: one row per phase × target × attack × point attacked: success (verified), the three
  verification verdicts, ‖x' − x‖, queries, seconds, and the candidate itself as a compact
  float16/float32 blob where it broke.
- `chunks`: one row per finished chunk (the unit of commit): its loss trace and seconds and the
  (target, point) keys of the rows it wrote.

A chunk's rows and its `chunks` row are committed in one transaction, so a crash never leaves
half a chunk; a resumed run skips every finished chunk and recomputes nothing.

The store knows itself: every row of every table is covered by a digest, kept per table (and per
phase for `rows` and `chunks`) as the sum modulo 2**256 of the SHA-256 of each row as stored, so
an insert, a delete, a duplicate or an edit changes it and a write updates it in the same
transaction. Opening a store that holds anything verifies every table against it first; a store
that fails (rows inserted, deleted or edited outside the suite, or written before stores kept a
digest) is refused in one line naming the file and the first table that does not match. The
whole store's digest (`ResultStore.digest()`) is recorded in results.json, so a report can be
checked against its store.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
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
    phase TEXT, attack TEXT, chunk TEXT, targets TEXT, trace TEXT, seconds REAL, members TEXT,
    PRIMARY KEY (phase, attack, chunk));
"""
DB_NAME = "results.sqlite"
DIGEST_KEY = "digest"  # the meta row holding the store's digest (the one row the digest does not cover)
SECTIONS = {"meta": False, "clean": False, "rows": True, "chunks": True}  # table → digested per phase
MODULUS = 2**256
ROW_KEY = "phase = ? AND target = ? AND attack = ? AND point = ?"


class ConfigMismatchError(ValueError):
    """Raised when resuming a run with a config that differs from the stored one."""


class StoreBusyError(RuntimeError):
    """Raised when another live process holds the run directory's lock."""


class StoreIntegrityError(ValueError):
    """Raised when a store's rows do not match its digest (or it has none): it is not used."""


def _row_hash(row: tuple) -> int:
    """SHA-256 of one row as stored (each value length-prefixed, so no two rows share an encoding), as an int."""
    digest = hashlib.sha256()
    for value in row:
        data = value if isinstance(value, bytes) else repr(value).encode()
        digest.update(b"%s%d:" % (b"B" if isinstance(value, bytes) else b"V", len(data)))
        digest.update(data)
    return int.from_bytes(digest.digest(), "big")


def _section(table: str, row: tuple) -> str:
    return f"{table}/{row[0]}" if SECTIONS[table] else table


def _account(sums: dict[str, int], table: str, rows: list[tuple], sign: int) -> None:
    """Add (sign 1) or remove (sign −1) `rows` of `table` from the per-section digest sums."""
    for row in rows:
        key = _section(table, row)
        sums[key] = (sums.get(key, 0) + sign * _row_hash(row)) % MODULUS


def _blob(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().numpy().astype(np.float32).tobytes()


def _unblob(blob: bytes, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(blob, dtype=np.float32).copy()).reshape(shape)


def compare_configs(stored: dict, config: dict, directory, volatile: tuple[str, ...] = ("call", "versions")) -> None:
    """Raise ConfigMismatchError naming every key (but `volatile` ones) whose value differs; changed code is named
    by its file first."""
    config = json.loads(json.dumps(config))
    changed = _changed_code(stored.get("code"), config.get("code"))
    if changed:
        raise ConfigMismatchError(f"cannot resume {directory}: {changed} since the run there started; rerun in a "
                                  "new output directory (or restore that code)")
    differ = _differences({k: v for k, v in stored.items() if k not in volatile},
                          {k: v for k, v in config.items() if k not in volatile})
    if differ:
        detail = "; ".join(f"{k}: stored {_short(old)}, now {_short(new)}" for k, (old, new) in differ.items())
        differ = list(differ)
        raise ConfigMismatchError(
            f"cannot resume {directory}: the run there has a different configuration ({', '.join(differ)} differ: "
            f"{detail}); rerun with the stored settings or choose another output directory")


def _changed_code(stored: dict | None, now: dict | None) -> str | None:
    """A sentence naming the first user file (or the suite) whose code differs between two `code` records."""
    if not isinstance(stored, dict) or not isinstance(now, dict):
        return None
    if stored.get("suite") != now.get("suite"):
        return f"the suite's code changed (stored {stored.get('suite')}, now {now.get('suite')})"
    files, now_files = stored.get("files", {}), now.get("files", {})
    for module in sorted(set(files) | set(now_files)):
        old, new = files.get(module, {}), now_files.get(module, {})
        if old.get("sha256") != new.get("sha256"):
            return f"the code in {new.get('file') or old.get('file') or module} changed"
    return None


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


def _lock(directory: Path) -> int:
    """An exclusive `flock` on the directory itself (released by the OS when the holder dies; no lock file a
    user could delete); raises StoreBusyError when another live process holds it."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise StoreBusyError(f"another run is writing {directory} (it holds the directory's lock); wait for it "
                             "to finish or choose another output directory") from None
    return handle


class ResultStore:
    """Append-only, chunk-atomic storage of one run's per-point results, covered by its own digest."""

    def __init__(self, directory: str | Path | None) -> None:
        """Open (or create) the store in `directory`, verifying what it holds; None keeps it in memory.

        A directory store locks the directory, so two runs never write it at once.
        """
        self.directory = Path(directory) if directory is not None else None
        self._lock: int | None = None
        if self.directory is not None:
            if self.directory.exists() and not self.directory.is_dir():
                raise NotADirectoryError(f"{self.directory} exists and is not a directory; choose another "
                                         "output directory")
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(self.directory)
        self.path = self.directory / DB_NAME if self.directory is not None else ":memory:"
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(SCHEMA)
            self.db.commit()
            self._sums = self.verify()
        except sqlite3.DatabaseError as error:
            self._release()
            raise ValueError(f"{self.path} is not a readable result store ({error}); "
                             "remove it or choose another directory") from None
        except StoreIntegrityError:
            self.db.close()
            self._release()
            raise

    @staticmethod
    def check_free(directory: str | Path) -> None:
        """Raise StoreBusyError if a live process holds `directory`'s lock (nothing is created)."""
        if Path(directory).is_dir():
            handle = _lock(Path(directory))
            fcntl.flock(handle, fcntl.LOCK_UN)
            os.close(handle)

    @classmethod
    def reader(cls, directory: str | Path) -> ResultStore:
        """Open an existing store read-only, verified: no lock taken, nothing created (reports use this)."""
        store = cls.__new__(cls)
        store.directory, store._lock = Path(directory), None
        store.path = store.directory / DB_NAME
        if not store.path.is_file():
            raise FileNotFoundError(f"{store.path} does not exist")
        try:
            store.db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
            store.db.execute("SELECT 1 FROM meta LIMIT 1")
            store._sums = store.verify()
        except sqlite3.DatabaseError as error:
            store.db.close()
            raise ValueError(f"{store.path} is not a readable result store ({error}); remove it or choose "
                             "another directory") from None
        except StoreIntegrityError:
            store.db.close()
            raise
        return store

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def close(self) -> None:
        self.db.close()
        self._release()

    # --- the digest ---------------------------------------------------------------------------
    def _scan(self) -> dict[str, int]:
        """The per-section digest sums of every row now in the store."""
        sums: dict[str, int] = {}
        for table in SECTIONS:
            where = f" WHERE key != '{DIGEST_KEY}'" if table == "meta" else ""
            _account(sums, table, self.db.execute(f"SELECT * FROM {table}{where}").fetchall(), 1)
        return {key: value for key, value in sums.items() if value}

    def verify(self) -> dict[str, int]:
        """Check every table against the recorded digest; return the sums. Raises StoreIntegrityError naming the
        file and the first table (and phase) that does not match."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (DIGEST_KEY,)).fetchone()
        found = self._scan()
        if row is None:
            if found:
                raise StoreIntegrityError(
                    f"{self.path} holds results but no digest (written before stores kept one, or the digest was "
                    "removed): it cannot be trusted; remove it (or choose another directory) and rerun")
            return {}
        try:
            recorded = {str(key): int(value, 16) for key, value in json.loads(row[0]).items()}
        except (ValueError, TypeError, AttributeError):
            raise StoreIntegrityError(f"{self.path}: the store's digest is not readable (edited outside the suite); "
                                      "the store cannot be trusted: remove it (or choose another directory) and "
                                      "rerun") from None
        order = list(SECTIONS)
        for key in sorted(set(recorded) | set(found),
                          key=lambda k: (order.index(k.split("/")[0]) if k.split("/")[0] in order else len(order), k)):
            if recorded.get(key, 0) != found.get(key, 0):
                table, _, phase = key.partition("/")
                raise StoreIntegrityError(
                    f"{self.path}: the {table} table{f' (phase {phase})' if phase else ''} does not match the "
                    "store's digest (rows inserted, deleted or edited outside the suite); the store cannot be "
                    "trusted: remove it (or choose another directory) and rerun")
        return found

    def digest(self) -> str:
        """SHA-256 of every section's digest: the whole store in one value (results.json records it)."""
        text = json.dumps({key: f"{value:064x}" for key, value in sorted(self._sums.items())})
        return hashlib.sha256(text.encode()).hexdigest()

    @contextmanager
    def _writing(self) -> Iterator[dict[str, int]]:
        """One transaction whose changes the caller accounts in the yielded sums; the digest row is written in
        the same transaction, and the sums kept only once it commits."""
        sums = dict(self._sums)
        with self.db:
            yield sums
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            (DIGEST_KEY, json.dumps({k: f"{v:064x}" for k, v in sorted(sums.items()) if v})))
        self._sums = {key: value for key, value in sums.items() if value}

    def _replace(self, sums: dict, table: str, where: str, keys: list[tuple], rows: list[tuple]) -> None:
        """Delete the rows of `table` matching `where` for each of `keys`, insert `rows`, account both as stored."""
        for key in keys:
            _account(sums, table, self.db.execute(f"SELECT * FROM {table} WHERE {where}", key).fetchall(), -1)
            self.db.execute(f"DELETE FROM {table} WHERE {where}", key)
        if rows:
            self.db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        for key in keys:
            _account(sums, table, self.db.execute(f"SELECT * FROM {table} WHERE {where}", key).fetchall(), 1)

    # --- config -------------------------------------------------------------------------------
    def config(self) -> dict | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        return json.loads(row[0]) if row else None

    def bind_config(self, config: dict, volatile: tuple[str, ...] = ()) -> None:
        """Store `config`, or check it equals the stored one (keys in `volatile` may differ)."""
        stored = self.config()
        config = json.loads(json.dumps(config))  # compare in the stored (JSON) form
        if stored is None:
            self.set_meta("config", config)
            return
        compare_configs(stored, config, self.directory, volatile)

    def set_meta(self, key: str, value) -> None:
        if key == DIGEST_KEY:
            raise ValueError(f"meta key {DIGEST_KEY!r} is the store's own digest; choose another key")
        with self._writing() as sums:
            self._replace(sums, "meta", "key = ?", [(key,)], [(key, json.dumps(value))])

    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- clean predictions -------------------------------------------------------------------
    def save_clean(self, target: str, correct: torch.Tensor) -> None:
        with self._writing() as sums:
            self._replace(sums, "clean", "target = ?", [(target,)],
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
        """Whether the chunk finished (its rows are covered by the store's digest, verified on opening)."""
        return self.db.execute("SELECT 1 FROM chunks WHERE phase = ? AND attack = ? AND chunk = ?",
                               (phase, attack, chunk)).fetchone() is not None

    def commit_chunk(self, phase: str, attack: str, chunk: str, records: list[tuple],
                     targets: list[str], trace: list[float], seconds: float) -> None:
        """Write a finished chunk's rows (replacing any left by an interrupted attempt) and its marker with the
        rows' keys, in one transaction with the updated digest."""
        members = [(target, point) for target, point, *_ in records]
        rows = [(phase, target, attack, point, int(success), int(ball), int(bounds), int(wrong),
                 norm, queries, secs, _blob(adv) if adv is not None else None)
                for target, point, success, ball, bounds, wrong, norm, queries, secs, adv in records]
        with self._writing() as sums:
            self._replace(sums, "rows", ROW_KEY, [(phase, target, attack, point) for target, point in members], rows)
            self._replace(sums, "chunks", "phase = ? AND attack = ? AND chunk = ?", [(phase, attack, chunk)],
                          [(phase, attack, chunk, json.dumps(targets), json.dumps(trace), seconds,
                            json.dumps(members))])

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
