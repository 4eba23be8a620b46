"""psycopg 3 against Sluice: simple queries, server-side parameters
(extended protocol), text and binary results. Prints one JSON document the
Rust test compares with the expected values."""
import json
import sys

import psycopg

port = int(sys.argv[1])
out = {}
with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
    out["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
    out["tls"] = conn.pgconn.ssl_in_use
    # Parameters are bound by the server (extended protocol).
    rows = conn.execute(
        "SELECT cell_id, calls, total_ms, avg_ms, window_start FROM kpi "
        "WHERE calls >= %s AND cell_id = %s ORDER BY window_start",
        (2, "a"),
    ).fetchall()
    out["text"] = [[r[0], r[1], r[2], r[3], r[4].isoformat()] for r in rows]
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT cell_id, calls, avg_ms, window_start FROM kpi WHERE cell_id = %s ORDER BY 4", ("c",))
        out["binary"] = [[r[0], r[1], r[2], r[3].isoformat()] for r in cur.fetchall()]
    try:
        conn.execute("SELECT nope FROM kpi")
    except psycopg.Error as e:
        out["error"] = [e.sqlstate, str(e.diag.message_primary)]
print(json.dumps(out))
