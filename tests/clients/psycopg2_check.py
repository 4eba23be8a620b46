"""psycopg2 against Sluice, as applications use it (it speaks the simple
protocol, interpolating parameters into the SQL text): parameters of
every type, executemany, named (server-side) cursors, copy_expert both
ways, transactions with autocommit off and savepoints. The password and
TLS come from libpq's environment. Prints one JSON document, compared by
the Rust test with what Postgres answers."""
import datetime
import decimal
import io
import json
import sys

import psycopg2

port = int(sys.argv[1])
conn = psycopg2.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice")
out = {"tls": bool(conn.info.ssl_in_use)}
cur = conn.cursor()
cur.execute("CREATE TABLE t2 (id INT PRIMARY KEY, amount DECIMAL(10,2), name TEXT, at TIMESTAMP)")
conn.commit()
cur.execute(
    "INSERT INTO t2 VALUES (%s, %s, %s, %s)",
    (1, decimal.Decimal("1.50"), "a'b", datetime.datetime(2024, 1, 2, 3, 4, 5)),
)
cur.executemany("INSERT INTO t2 VALUES (%s, %s, %s, %s)", [(2, None, "b", None), (3, 3, "c", None)])
conn.commit()
cur.execute("SELECT id, amount, name, at FROM t2 WHERE id = ANY(%s) ORDER BY id", ([1, 3],))
out["select"] = [[r[0], str(r[1]), r[2], str(r[3])] for r in cur.fetchall()]
cur.execute("SELECT %s * 2, %s || 'x', %s", (decimal.Decimal("1.25"), "y", None))
out["params"] = [str(v) for v in cur.fetchone()]
conn.commit()
# A named cursor: DECLARE, then FETCH in rounds.
named = conn.cursor(name="rounds")
named.itersize = 1
named.execute("SELECT id FROM t2 ORDER BY id")
out["named_cursor"] = [r[0] for r in named]
named.close()
conn.commit()
# copy_expert, out and in.
buf = io.StringIO()
cur.copy_expert("COPY (SELECT id, name FROM t2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", buf)
out["copy_out"] = buf.getvalue()
cur.copy_expert("COPY t2 (id, name) FROM STDIN WITH (FORMAT csv)", io.StringIO("4,d\n5,\"e,f\"\n"))
out["copy_in"] = cur.rowcount
conn.commit()
# Transactions: rollback, a failed statement, savepoints.
cur.execute("DELETE FROM t2 WHERE id = 1")
conn.rollback()
try:
    cur.execute("INSERT INTO t2 (id) VALUES (2)")
except psycopg2.Error as e:
    out["duplicate"] = e.pgcode
try:
    cur.execute("SELECT 1")
except psycopg2.Error as e:
    out["failed_block"] = e.pgcode
conn.rollback()
cur.execute("INSERT INTO t2 (id, name) VALUES (6, 'kept')")
cur.execute("SAVEPOINT s")
cur.execute("INSERT INTO t2 (id, name) VALUES (7, 'undone')")
cur.execute("ROLLBACK TO SAVEPOINT s")
conn.commit()
cur.execute("SELECT id, name FROM t2 ORDER BY id")
out["rows"] = [list(r) for r in cur.fetchall()]
conn.close()
print(json.dumps(out))
