// node-postgres (pg) against Sluice, as services use it: parameters of
// every type (node-postgres sends them as text, leaving their types to the
// server), named prepared statements, transactions, and a cursor over a
// subscription. Prints one JSON document, which the Rust test compares
// with what Postgres answers.
// The password comes from PGPASSWORD; with PGSSLROOTCERT set, the
// connection is TLS, verifying the server's certificate against it.
const fs = require("fs");
const path = require("path");
const { Client } = require(path.join(process.env.NODE_MODULES_DIR, "pg"));

async function main() {
  const port = Number(process.argv[2]);
  const ssl = process.env.PGSSLROOTCERT
    ? { ca: fs.readFileSync(process.env.PGSSLROOTCERT), rejectUnauthorized: true }
    : false;
  const client = new Client({ host: "127.0.0.1", port, user: "sluice", database: "sluice", ssl });
  await client.connect();
  const out = {};
  out.tls = client.connection.stream.encrypted === true;
  await client.query("CREATE TABLE t (id INT PRIMARY KEY, calls BIGINT, name TEXT, at TIMESTAMP)");
  const insert = "INSERT INTO t VALUES ($1, $2, $3, $4)";
  await client.query(insert, [1, 10, "a", "2024-01-01 00:00:00"]);
  await client.query(insert, [2, 20, "b", null]);
  await client.query({ name: "ins", text: insert, values: [3, 30, "c", "2024-01-03 12:00:00"] });
  await client.query({ name: "ins", text: insert, values: [4, 40, null, null] });
  const q = async (text, values) => (await client.query(text, values)).rows;
  out.lt = await q("SELECT id FROM t WHERE calls < $1 ORDER BY id", [25]);
  // Untyped, the parameter takes the column's type: 20.5 is no bigint.
  try {
    await q("SELECT count(*)::int AS n FROM t WHERE calls < $1", [20.5]);
  } catch (e) {
    out.fraction = [e.code, e.message];
  }
  out.text = await q("SELECT id FROM t WHERE name = $1", ["b"]);
  out.plus = await q("SELECT $1::bigint + 1 AS x", [41]);
  out.any = await q("SELECT id FROM t WHERE id = ANY($1) ORDER BY id", [[1, 3]]);
  out.nulls = await q("SELECT id FROM t WHERE name IS NULL OR at IS NULL ORDER BY id");
  out.bigint = await q("SELECT $1::bigint * 2 AS x", ["9007199254740993"]);
  out.timestamp = (await q("SELECT at FROM t WHERE id = $1", [3]))[0].at instanceof Date;
  // A transaction rolled back, then one committed.
  await client.query("BEGIN");
  await client.query("UPDATE t SET name = $1 WHERE id = $2", ["gone", 1]);
  await client.query("ROLLBACK");
  await client.query("BEGIN");
  await client.query("DELETE FROM t WHERE id = $1", [4]);
  await client.query("COMMIT");
  out.after = await q("SELECT id, name FROM t ORDER BY id");
  try {
    await client.query("SELECT nope FROM t");
  } catch (e) {
    out.error = [e.code, e.message, Number(e.position)];
  }
  console.log(JSON.stringify(out));
  await client.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
