"""The sweep's store: one SQLite database, a row per run, nothing lost.

The database is the truth and the driver is disposable (Optuna's RDB storage): each state change
is one transaction, in WAL mode, so a reader sees a consistent store at any time, mid-sweep too.

States: ``pending`` -> ``running`` -> ``done`` | ``failed`` (with a one-line reason and a kind:
``error``, ``diverged``, ``memory``, ``killed``). Only the driver that holds the store's lock
(an exclusive ``flock`` on ``<db>.lock``, released by the kernel when its process dies, however
it dies) writes runs. A driver that starts therefore knows that any ``running`` row was left by
a driver that is gone, and puts it back to ``pending``; a second driver on the same store is
refused. A result is written only over the row its driver marked ``running``, so no run is ever
counted twice.
"""

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from ..errors import ExplorerError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,           -- hash of what determines the result (plan.run_key)
    label TEXT NOT NULL,            -- the grid point, "positional=rope, n_layers=8"
    point TEXT NOT NULL,            -- JSON: the grid coordinates
    seed INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    failure TEXT,                   -- error | diverged | memory | killed
    reason TEXT,                    -- one line
    attempts INTEGER NOT NULL DEFAULT 0,
    task TEXT NOT NULL,             -- JSON: the resolved spec and train settings
    metrics TEXT,                   -- JSON: final/best validation loss, costs, throughput
    curve TEXT,                     -- JSON: [{step, tokens, train_loss, val_loss}]
    result TEXT,                    -- JSON: the rest of the training result
    host TEXT,                      -- where it ran: the hostname (on Ray, with the node's IP)
    worker TEXT,                    -- the process that ran it (pid)
    driver TEXT,                    -- the driver that started it
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    seconds REAL                    -- the run's own time, measured by its worker
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
STATES = ("pending", "running", "done", "failed")
# Failures a new start retries by itself: nothing was wrong with the run.
RETRIED_FAILURES = ("killed",)
JSON_COLUMNS = ("point", "task", "metrics", "curve", "result")
COLUMNS = ("key", "label", "point", "seed", "state", "failure", "reason", "attempts", "task",
           "metrics", "curve", "result", "host", "worker", "driver", "created", "started",
           "finished", "seconds")  # the runs table's, as SCHEMA orders them


def driver_id():
    return f"{socket.gethostname()}:{os.getpid()}"


class Store:
    """A sweep's SQLite store. ``readonly`` opens an existing one for reports and status."""

    def __init__(self, path, readonly=False):
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise ExplorerError(f"{self.path}: no such store; run the sweep first")
        self.db = None
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=30)
            self._check_is_store(readonly)  # before anything is written
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                with self.db:
                    self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self._close_db()
            raise ExplorerError(f"{self.path}: cannot open the sweep store: {exc}") from None
        except ExplorerError:
            self._close_db()
            raise
        self.db.row_factory = sqlite3.Row
        self.driver = driver_id()
        self._lock = None

    def _check_is_store(self, readonly):
        """Refuse a file that is not a sweep's store (another program's database, a text file):
        writing our tables into it would damage it, reading it would fail on every query."""
        try:
            tables = {name for name, in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:  # not SQLite at all
            why = str(exc)
        else:
            if "runs" in tables or not (tables or readonly):  # ours, or new
                return
            why = "an SQLite database without a runs table" if tables else "an empty file"
        raise ExplorerError(f"{self.path}: is not an explorer sweep store (SQLite): {why}; "
                            "give --db the store of a sweep, or a path that does not exist yet")

    def _close_db(self):
        if self.db is not None:
            self.db.close()

    def close(self):
        self.db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- the driver's lock -------------------------------------------------------------------

    @contextlib.contextmanager
    def driver_lock(self):
        """Hold the store for this driver; refuse if another live driver holds it."""
        lock = open(f"{self.path}.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise self._taken(self.meta("driver")) from None
        self._lock = lock
        try:
            self.set_meta("driver", f"{self.driver} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            yield
        finally:
            self._lock = None
            lock.close()  # releases the flock

    def refuse_if_driven(self):
        """Raise what :meth:`driver_lock` would if another live driver holds this store (checked
        before starting an executor: a refused start then costs nothing)."""
        holder = self.driver_running()
        if holder:
            raise self._taken(holder)

    def _taken(self, holder):
        return ExplorerError(f"{self.path}: another driver ({holder or 'another process'}) is "
                             "running this sweep; follow it with --status or --report")

    def driver_running(self):
        """The live driver holding this store (its description), or None."""
        try:
            with open(f"{self.path}.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.meta("driver") or "another process"
        except OSError:
            return None
        return None

    def meta(self, name):
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, name, value):
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- state changes, one transaction each -------------------------------------------------

    def add(self, plan, threads):
        """Add the plan's runs that the store does not hold yet, as pending; return how many."""
        now = time.time()
        # A resumed sweep's runs are held already: their tasks (a spec each) are not even built
        held = {row["key"] for row in self._select([run.key for run in plan.runs], "key")}
        rows = [(run.key, run.point.label, json.dumps(run.point.coords), run.seed,
                 json.dumps(run.task(threads)), now) for run in plan.runs if run.key not in held]
        with self.db:
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO runs (key, label, point, seed, state, task, created) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)", rows)
            return self.db.total_changes - before

    def reset_stale(self):
        """Put back to pending the runs a stopped driver left running; return how many."""
        with self.db:
            return self.db.execute(
                "UPDATE runs SET state = 'pending', reason = 'its driver stopped mid-run', "
                "worker = NULL WHERE state = 'running'").rowcount

    def start(self, key, worker=None, host=None):
        with self.db:
            changed = self.db.execute(
                "UPDATE runs SET state = 'running', attempts = attempts + 1, started = ?, "
                "driver = ?, worker = ?, host = ?, reason = NULL, failure = NULL "
                "WHERE key = ? AND state IN ('pending', 'failed')",
                (time.time(), self.driver, worker, host, key)).rowcount
        if not changed:
            raise ExplorerError(f"{self.path}: run {key} is not pending")

    def finish(self, outcome):
        """Record a worker's outcome over the row this driver started; False if there is none.
        ``attempts`` counts the tries an executor made by itself too (``node_retries``: a Ray
        run whose node died, run again on another)."""
        done = outcome["state"] == "done"
        result = dict(outcome.get("result") or {})
        curve = result.pop("curve", None)
        with self.db:
            return bool(self.db.execute(
                "UPDATE runs SET state = ?, failure = ?, reason = ?, metrics = ?, curve = ?, "
                "result = ?, host = COALESCE(?, host), worker = COALESCE(?, worker), "
                "finished = ?, seconds = ?, attempts = attempts + ? "
                "WHERE key = ? AND state = 'running' AND driver = ?",
                (outcome["state"], None if done else outcome["failure"],
                 None if done else outcome["reason"],
                 json.dumps(outcome.get("metrics")) if done else None,
                 json.dumps(curve) if done else None, json.dumps(result) if done else None,
                 outcome.get("host"), outcome.get("worker"), time.time(),
                 outcome.get("seconds"), outcome.get("node_retries", 0), outcome["key"],
                 self.driver)).rowcount)

    def release(self):
        """Put every run this driver started and has not finished back to pending (it is
        stopping before they finish)."""
        with self.db:
            return self.db.execute(
                "UPDATE runs SET state = 'pending', reason = 'interrupted', worker = NULL "
                "WHERE state = 'running' AND driver = ?", (self.driver,)).rowcount

    # -- reading -----------------------------------------------------------------------------

    def todo(self, keys, retry_failed=False):
        """The keys among ``keys`` (in that order) that still need a run."""
        failures = None if retry_failed else RETRIED_FAILURES
        states = {row["key"]: (row["state"], row["failure"])
                  for row in self._select(keys, "key, state, failure")}
        return [k for k in keys if k in states and (
            states[k][0] == "pending" or states[k][0] == "failed" and (
                failures is None or states[k][1] in failures))]

    def rows(self, keys, columns=None):
        """key -> the run's row as a dict, JSON columns decoded, for the keys the store holds;
        ``columns`` (names) reads only those (and the key): a status needs no curves, and
        decoding every run's task and curve is most of what a 10,000-run report costs."""
        if columns is not None:
            unknown = set(columns) - set(COLUMNS)
            if unknown:
                raise ValueError(f"not columns of the runs table: {sorted(unknown)}")
            columns = ["key", *(c for c in columns if c != "key")]
        decoded = [c for c in JSON_COLUMNS if columns is None or c in columns]
        out = {}
        for row in self._select(keys, ", ".join(columns) if columns else "*"):
            record = dict(row)
            for column in decoded:
                if record[column] is not None:
                    record[column] = json.loads(record[column])
            out[record["key"]] = record
        return out

    def counts(self, keys):
        counts = dict.fromkeys(STATES, 0)
        for row in self._select(keys, "state"):
            counts[row["state"]] += 1
        return counts

    def others(self, keys):
        """How many runs the store holds that ``keys`` do not (from earlier sweep files)."""
        total = self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return total - sum(self.counts(keys).values())

    def _select(self, keys, columns="*"):
        keys = list(keys)
        for i in range(0, len(keys), 500):  # SQLite's limit on host parameters
            chunk = keys[i: i + 500]
            yield from self.db.execute(
                f"SELECT {columns} FROM runs WHERE key IN ({','.join('?' * len(chunk))})", chunk)


class MissingStore:
    """The store of a sweep not run yet, read as empty (every run pending) without creating
    it: ``--status`` and ``--dry-run`` before the first start."""

    def __init__(self, path):
        self.path = Path(path)

    def rows(self, keys, columns=None):
        return {}

    def todo(self, keys, retry_failed=False):
        return []

    def counts(self, keys):
        return dict.fromkeys(STATES, 0)

    def others(self, keys):
        return 0

    def driver_running(self):
        return None

    def refuse_if_driven(self):
        pass

    def close(self):
        pass


def open_to_read(path, missing_ok=False):
    """The store at ``path``, read-only; with ``missing_ok``, a :class:`MissingStore` if there is
    none yet (no file, or the empty file a start that stopped at once leaves)."""
    if missing_ok and (not Path(path).exists() or Path(path).stat().st_size == 0):
        return MissingStore(path)
    return Store(path, readonly=True)
