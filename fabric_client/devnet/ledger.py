"""Devnet's ledger in one SQLite file: blocks, the transaction index, world state and chaincode events.

A restart reopens the file and continues the chain. What is kept per block is what the Gateway needs (header
hashes, every transaction's id and validation code, VALID transactions' events); the envelopes themselves are
hashed into the block's data hash but not stored, which keeps 100,000-transaction chains small.

One writer (the committer thread) appends a whole block in one SQLite transaction; readers use one connection
per thread in WAL mode and read committed snapshots, so endorsement never sees a half-written block.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fabric_client.devnet.shim import Version

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY, previous_hash BLOB NOT NULL, data_hash BLOB NOT NULL, hash BLOB NOT NULL,
    tx_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    block INTEGER NOT NULL, txnum INTEGER NOT NULL, tx_id TEXT NOT NULL, code INTEGER NOT NULL,
    PRIMARY KEY (block, txnum)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transactions_by_tx_id ON transactions (tx_id, block, txnum);
CREATE TABLE IF NOT EXISTS state (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, block INTEGER NOT NULL,
    txnum INTEGER NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL, txnum INTEGER NOT NULL, tx_id TEXT NOT NULL, chaincode TEXT NOT NULL,
    name TEXT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (block, txnum)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class TxRecord:
    """A transaction as committed: its position, id, validation code, writes (if VALID) and event."""

    tx_id: str
    code: int
    writes: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    event: tuple[str, str, bytes] | None = None  # (chaincode, name, payload), VALID transactions only


@dataclass(frozen=True)
class StoredEvent:
    block: int
    tx_id: str
    chaincode: str
    name: str
    payload: bytes


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def block_header_hash(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    """SHA-256 of the ASN.1 DER header ``SEQUENCE{INTEGER number, OCTET STRING prev, OCTET STRING data}``."""
    number_bytes = number.to_bytes(number.bit_length() // 8 + 1, "big")  # leading 0 keeps it positive
    header = _der(0x02, number_bytes) + _der(0x04, previous_hash) + _der(0x04, data_hash)
    return hashlib.sha256(_der(0x30, header)).digest()


class Ledger:
    """The SQLite-backed chain of one channel."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._local = threading.local()
        row = self._writer.execute(
            "SELECT number, hash, previous_hash FROM blocks ORDER BY number DESC LIMIT 1"
        ).fetchone()
        self.height: int = row[0] + 1 if row else 0
        self.current_hash: bytes = row[1] if row else b""
        self.previous_hash: bytes = row[2] if row else b""

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def close(self) -> None:
        self._writer.close()

    # -- writes (committer thread only) -------------------------------------------------------------

    def append(self, data: Sequence[bytes], transactions: Sequence[TxRecord]) -> int:
        """Append the next block (``data`` = its envelopes) with its transactions; return its number."""
        number = self.height
        data_hash = hashlib.sha256(b"".join(data)).digest()
        block_hash = block_header_hash(number, self.current_hash, data_hash)
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (number, self.current_hash, data_hash, block_hash, len(transactions)),
            )
            db.executemany(
                "INSERT INTO transactions VALUES (?, ?, ?, ?)",
                [(number, txnum, tx.tx_id, tx.code) for txnum, tx in enumerate(transactions)],
            )
            upserts, deletes = [], []
            for txnum, tx in enumerate(transactions):
                for (namespace, key), value in tx.writes.items():
                    if value is None:
                        deletes.append((namespace, key))
                    else:
                        upserts.append((namespace, key, value, number, txnum))
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?)", upserts)
            db.executemany("DELETE FROM state WHERE namespace = ? AND key = ?", deletes)
            db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (number, txnum, tx.tx_id, *tx.event)
                    for txnum, tx in enumerate(transactions)
                    if tx.event is not None
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.previous_hash, self.current_hash = self.current_hash, block_hash
        self.height = number + 1
        return number

    def committed_version(self, namespace: str, key: str) -> Version | None:
        """Version of a key in committed state, read by the committer."""
        row = self._writer.execute(
            "SELECT block, txnum FROM state WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def committed_tx_ids(self, tx_ids: Sequence[str]) -> set[str]:
        """Which of ``tx_ids`` are already in the ledger (committer side)."""
        found: set[str] = set()
        for tx_id in set(tx_ids):
            if self._writer.execute("SELECT 1 FROM transactions WHERE tx_id = ? LIMIT 1", (tx_id,)).fetchone():
                found.add(tx_id)
        return found

    # -- reads (any thread) --------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read inside sees the same committed blocks."""
        connection = self._reader()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    @staticmethod
    def read_state(connection: sqlite3.Connection, namespace: str, key: str) -> tuple[bytes, Version] | None:
        row = connection.execute(
            "SELECT value, block, txnum FROM state WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return (row[0], (row[1], row[2])) if row else None

    def find_transaction(self, tx_id: str) -> tuple[int, int] | None:
        """(validation code, block) of the *first* occurrence of ``tx_id``, as the peer's index answers."""
        row = self._reader().execute(
            "SELECT code, block FROM transactions WHERE tx_id = ? ORDER BY block, txnum LIMIT 1", (tx_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def transactions(self, block: int) -> list[tuple[str, int]]:
        """(tx id, validation code) of every transaction in ``block``, duplicates included."""
        return self._reader().execute(
            "SELECT tx_id, code FROM transactions WHERE block = ? ORDER BY txnum", (block,)
        ).fetchall()

    def events(self, first_block: int, end_block: int) -> list[StoredEvent]:
        """Events of VALID transactions in blocks ``[first_block, end_block)``, in ledger order."""
        rows = self._reader().execute(
            "SELECT block, tx_id, chaincode, name, payload FROM events WHERE block >= ? AND block < ? "
            "ORDER BY block, txnum",
            (first_block, end_block),
        ).fetchall()
        return [StoredEvent(*row) for row in rows]
