// The PostgreSQL JDBC driver (what DBeaver, DataGrip and Metabase use)
// against Sluice: DatabaseMetaData as tools read it, transaction
// isolation, prepared statements of every type, and fetching in rounds.
// Prints one line per check ("name: value"), which the Rust test compares
// with what Postgres answers.
//
//   javac -d out JdbcCheck.java && java -cp out:/usr/share/java/postgresql.jar JdbcCheck URL

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class JdbcCheck {
    static void print(String name, Object value) {
        System.out.println(name + ": " + value);
    }

    static List<String> column(ResultSet rs, String... names) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (String n : names) {
                row.add(String.valueOf(rs.getString(n)));
            }
            out.add(String.join("|", row));
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args.length > 1 ? args[1] : "sluice");
        if (args.length > 2) {
            props.setProperty("password", args[2]);
        }
        try (Connection c = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData md = c.getMetaData();
            print("product", md.getDatabaseProductName());
            List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
            print("schemas", schemas.contains("public") + " " + schemas.contains("pg_catalog"));
            print("tables", column(md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW"}), "TABLE_NAME", "TABLE_TYPE"));
            print("columns", column(md.getColumns(null, "public", "cells", "%"), "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "NULLABLE"));
            print("view_columns", column(md.getColumns(null, "public", "kpi", "%"), "COLUMN_NAME", "TYPE_NAME"));
            print("primary_keys", column(md.getPrimaryKeys(null, "public", "cells"), "COLUMN_NAME", "KEY_SEQ", "PK_NAME"));
            print("index_info", column(md.getIndexInfo(null, "public", "cells", false, false), "INDEX_NAME", "NON_UNIQUE", "COLUMN_NAME"));
            print("imported_keys", column(md.getImportedKeys(null, "public", "cells"), "PKCOLUMN_NAME"));
            ResultSet functions = md.getFunctions(null, "public", "%");
            print("functions", column(functions, "FUNCTION_NAME"));
            List<String> types = column(md.getTypeInfo(), "TYPE_NAME");
            print("type_info", types.contains("int8") + " " + types.contains("text") + " " + types.contains("timestamp"));

            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            print("isolation", c.getTransactionIsolation());

            // Prepared statements of every type (the driver sends their OIDs).
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO cells (cell_id, capacity, ratio, price, active, since, day, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")) {
                ps.setString(1, "x");
                ps.setInt(2, 7);
                ps.setDouble(3, 0.25);
                ps.setBigDecimal(4, new BigDecimal("12.50"));
                ps.setBoolean(5, true);
                ps.setTimestamp(6, Timestamp.valueOf("2024-01-02 03:04:05.678"));
                ps.setDate(7, java.sql.Date.valueOf("2024-02-29"));
                ps.setNull(8, Types.VARCHAR);
                print("insert", ps.executeUpdate());
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT ? + 1")) {
                ps.setBigDecimal(1, new BigDecimal("1.5"));
                ResultSet rs = ps.executeQuery();
                rs.next();
                print("decimal_plus", rs.getBigDecimal(1));
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT cell_id, capacity, ratio, price, active, since, day, note FROM cells WHERE capacity > ? AND since < ? ORDER BY cell_id")) {
                ps.setLong(1, 1L);
                ps.setTimestamp(2, Timestamp.valueOf("2030-01-01 00:00:00"));
                ResultSet rs = ps.executeQuery();
                List<String> rows = new ArrayList<>();
                while (rs.next()) {
                    rows.add(rs.getString(1) + "|" + rs.getInt(2) + "|" + rs.getDouble(3) + "|" + rs.getBigDecimal(4)
                            + "|" + rs.getBoolean(5) + "|" + rs.getTimestamp(6) + "|" + rs.getDate(7) + "|" + rs.getString(8));
                }
                print("select", rows);
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT cell_id FROM cells WHERE cell_id = ANY(?) ORDER BY 1")) {
                ps.setArray(1, c.createArrayOf("text", new String[] {"a", "x"}));
                print("array", column(ps.executeQuery(), "cell_id"));
            }
            // Fetching in rounds: autocommit off and a fetch size.
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.setFetchSize(1);
                ResultSet rs = st.executeQuery("SELECT cell_id FROM cells ORDER BY cell_id");
                List<String> rows = new ArrayList<>();
                while (rs.next()) {
                    rows.add(rs.getString(1));
                }
                print("fetch_size", rows);
            }
            try (Statement st = c.createStatement()) {
                st.executeUpdate("DELETE FROM cells WHERE cell_id = 'x'");
            }
            c.rollback();
            try (Statement st = c.createStatement()) {
                print("after_rollback", column(st.executeQuery("SELECT count(*) AS n FROM cells"), "n"));
            }
            c.commit();
        }
    }
}
