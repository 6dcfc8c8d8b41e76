// PostgreSQL JDBC (Debian libpostgresql-jdbc-java on Java 17) scenarios of the driver matrix,
// run by ../run_matrix.py as `java -cp /usr/share/java/postgresql.jar Scenarios.java` (the
// source launcher: one JVM per pooler mode runs every scenario). The environment is described
// in ../scenario_common.py. prepareThreshold (server-side named statements), batches, binary
// transfer, server-side cursors (setFetchSize), COPY (CopyManager), LISTEN/NOTIFY, cancel, TLS.

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;

public class Scenarios {
    static final String UNICODE = "日本語 ✓ émoji 🐘";
    static final String NUMERIC = "12345678901234567890.123456789";
    static final int LARGE = 2 * 1024 * 1024;
    static final String SESSION_ONLY = "LISTEN keeps state on its server connection: session mode "
            + "only (docs/configuration.md, pooler_mode)";
    static final List<String> SCENARIOS = List.of("crud", "rollback", "error_recovery",
            "prepared_concurrency", "batch", "types", "large_values", "binary", "copy", "cursor",
            "listen_notify", "cancel", "tls");

    static String host = env("PGDOG_HOST", "127.0.0.1");
    static String port = env("PGDOG_PORT", null);
    static String user = env("PGDOG_USER", "pgdog");
    static String password = env("PGDOG_PASSWORD", "pgdog");
    static String db = env("PGDOG_DB", "pgdog");
    static String mode = env("MATRIX_MODE", null);
    static String prefix = env("MATRIX_PREFIX", null);
    static String ca = env("MATRIX_CA", null);
    static String badCa = env("MATRIX_BAD_CA", null);
    static int clients = Integer.parseInt(env("MATRIX_CLIENTS", "8"));
    static int txns = Integer.parseInt(env("MATRIX_TXNS", "25"));

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    static String t(String name) {
        return prefix + "_" + name;
    }

    static class Expectation extends RuntimeException {
        Expectation(String m) { super(m); }
    }

    static class Skip extends RuntimeException {
        Skip(String m) { super(m); }
    }

    static void expect(boolean cond, String message) {
        if (!cond) throw new Expectation(message);
    }

    static String show(Object o) {
        String s;
        if (o instanceof byte[] b) s = "<" + b.length + " bytes>";
        else if (o instanceof List<?> l) {
            List<String> parts = new ArrayList<>();
            for (Object x : l) parts.add(show(x));
            s = parts.toString();
        } else s = String.valueOf(o);
        return s.length() > 300 ? s.substring(0, 300) + "... (" + s.length() + " chars)" : s;
    }

    static boolean same(Object a, Object b) {
        if (a instanceof byte[] x && b instanceof byte[] y) return Arrays.equals(x, y);
        if (a instanceof BigDecimal x && b instanceof BigDecimal y) return x.compareTo(y) == 0;
        if (a instanceof List<?> x && b instanceof List<?> y) {
            if (x.size() != y.size()) return false;
            for (int i = 0; i < x.size(); i++) if (!same(x.get(i), y.get(i))) return false;
            return true;
        }
        return Objects.equals(a, b);
    }

    static void expectEq(Object got, Object want, String what) {
        if (!same(got, want)) throw new Expectation(what + ": got " + show(got) + ", expected " + show(want));
    }

    interface Body { void run() throws Exception; }

    static void expectState(String state, String what, Body body) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            String got = e.getSQLState();
            if (e instanceof BatchUpdateException && e.getNextException() != null) got = e.getNextException().getSQLState();
            expect(state.equals(got), what + ": got SQLSTATE " + got + " (" + e.getMessage() + "), expected " + state);
            return;
        }
        throw new Expectation(what + " did not fail (expected SQLSTATE " + state + ")");
    }

    static Connection connect(Map<String, String> extra) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        p.setProperty("ApplicationName", "matrix-" + prefix);
        p.setProperty("sslmode", "disable");
        p.setProperty("connectTimeout", "10");
        String h = host;
        for (Map.Entry<String, String> e : extra.entrySet()) {
            if (e.getKey().equals("host")) h = e.getValue();
            else p.setProperty(e.getKey(), e.getValue());
        }
        return DriverManager.getConnection("jdbc:postgresql://" + h + ":" + port + "/" + db, p);
    }

    static Connection connect() throws SQLException {
        return connect(Map.of());
    }

    static List<List<Object>> rows(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
            try (ResultSet rs = ps.executeQuery()) {
                List<List<Object>> out = new ArrayList<>();
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    List<Object> row = new ArrayList<>();
                    for (int i = 1; i <= n; i++) row.add(rs.getObject(i));
                    out.add(row);
                }
                return out;
            }
        }
    }

    static Object scalar(Connection c, String sql, Object... params) throws SQLException {
        List<List<Object>> r = rows(c, sql, params);
        return r.isEmpty() ? null : r.get(0).get(0);
    }

    static int update(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
            return ps.executeUpdate();
        }
    }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }

    static List<Object> row(Object... v) {
        return Arrays.asList(v);
    }

    static String md5(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(b));
    }

    static String largeText() {
        String unit = "pgdog large value ".repeat(60).substring(0, 1023) + "é";
        return unit.repeat(LARGE / 1024);
    }

    static byte[] largeBytes() {
        byte[] b = new byte[LARGE];
        new Random(1234).nextBytes(b);
        return b;
    }

    static byte[] allBytes() {
        byte[] b = new byte[256];
        for (int i = 0; i < 256; i++) b[i] = (byte) i;
        return b;
    }

    // ------------------------------------------------------------------------------ scenarios

    static void crud() throws Exception {
        String tb = t("crud");
        try (Connection c = connect(Map.of("prepareThreshold", "1"))) {
            c.setAutoCommit(false);
            exec(c, "CREATE TABLE " + tb + " (id int PRIMARY KEY, name text NOT NULL, qty int)");
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + tb + " (id, name, qty) VALUES (?, ?, ?)")) {
                for (int i = 1; i <= 10; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "item " + i);
                    ps.setInt(3, i * 10);
                    expectEq(ps.executeUpdate(), 1, "INSERT row count");
                }
            }
            c.commit();
            expectEq(update(c, "UPDATE " + tb + " SET qty = qty * 2 WHERE id <= ?", 5), 5, "UPDATE row count");
            expectEq(update(c, "DELETE FROM " + tb + " WHERE id > ?", 8), 2, "DELETE row count");
            c.commit();
            exec(c, "ALTER TABLE " + tb + " ADD COLUMN tag text");
            exec(c, "UPDATE " + tb + " SET tag = 'even' WHERE id % 2 = 0");
            c.commit();
            List<List<Object>> want = new ArrayList<>();
            for (int i = 1; i <= 8; i++) want.add(row(i, "item " + i, i * 10 * (i <= 5 ? 2 : 1), i % 2 == 0 ? "even" : null));
            expectEq(rows(c, "SELECT id, name, qty, tag FROM " + tb + " ORDER BY id"), want, "rows after create/insert/update/delete");
            c.commit();
        }
    }

    static void rollback() throws Exception {
        String items = t("items");
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            for (int i = 1000; i < 1005; i++) update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (?, 'rollback', ?)", i, i);
            expectEq(scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'rollback'"), 5, "rows inside the transaction");
            c.rollback();
            expectEq(scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'rollback'"), 0, "rows after ROLLBACK");
            c.commit();
            update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (1010, 'rollback', 1)");
            c.commit();
            update(c, "UPDATE " + items + " SET val = 99 WHERE id = 1010");
            update(c, "DELETE FROM " + items + " WHERE id = 1010");
            c.rollback();
            expectEq(rows(c, "SELECT id, val FROM " + items + " WHERE grp = 'rollback'"), List.of(row(1010, 1)), "rows after the rolled-back update and delete");
            c.commit();
        }
    }

    static void errorRecovery() throws Exception {
        String items = t("items");
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2000, 'error', 1)");
            expectState("22012", "1/0", () -> scalar(c, "SELECT 1 / 0"));
            expectState("25P02", "statement in a failed transaction", () -> update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2001, 'error', 1)"));
            c.rollback();
            expectEq(scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'error'"), 0, "rows of the failed transaction");
            c.commit();
            update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2002, 'error', 2)");
            var sp = c.setSavepoint("sp");
            expectState("23505", "duplicate key", () -> update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (?, 'error', 3)", 2002));
            c.rollback(sp);
            update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2003, 'error', 3)");
            c.commit();
            c.setAutoCommit(true);
            expectState("42P01", "query of a missing table", () -> scalar(c, "SELECT * FROM " + prefix + "_no_such_table"));
            expectEq(rows(c, "SELECT id, val FROM " + items + " WHERE grp = 'error' ORDER BY id"), List.of(row(2002, 2), row(2003, 3)), "rows after savepoint recovery");
        }
        // autosave=always: the driver wraps each statement in a savepoint and rolls back to it
        // on an error, so the transaction goes on and commits.
        try (Connection c = connect(Map.of("autosave", "always"))) {
            c.setAutoCommit(false);
            update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2010, 'error', 10)");
            expectState("23505", "duplicate key under autosave", () -> update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2010, 'error', 11)"));
            update(c, "INSERT INTO " + items + " (id, grp, val) VALUES (2011, 'error', 11)");
            c.commit();
            expectEq(rows(c, "SELECT id, val FROM " + items + " WHERE id IN (2010, 2011) ORDER BY id"), List.of(row(2010, 10), row(2011, 11)), "rows committed under autosave");
            c.commit();
        }
    }

    static void preparedConcurrency() throws Exception {
        String items = t("items");
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        ConcurrentLinkedQueue<String> problems = new ConcurrentLinkedQueue<>();
        List<Future<?>> futures = new ArrayList<>();
        for (int w = 0; w < clients; w++) {
            final int worker = w;
            futures.add(pool.submit(() -> {
                int base = 100000 + worker * 1000;
                // prepareThreshold=1: server-side named statements (S_n) from the first use.
                try (Connection c = connect(Map.of("prepareThreshold", "1"))) {
                    c.setAutoCommit(false);
                    for (int i = 0; i < txns; i++) {
                        try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + items + " (id, grp, val, note) VALUES (?, 'prep', ?, ?)");
                             PreparedStatement cnt = c.prepareStatement("SELECT count(*)::int FROM " + items + " WHERE grp = 'prep' AND id BETWEEN ? AND ?")) {
                            ins.setInt(1, base + i);
                            ins.setInt(2, worker);
                            ins.setString(3, "c" + worker);
                            ins.executeUpdate();
                            cnt.setInt(1, base);
                            cnt.setInt(2, base + 999);
                            try (ResultSet rs = cnt.executeQuery()) {
                                rs.next();
                                int n = rs.getInt(1);
                                if (n != i + 1) throw new IllegalStateException("worker " + worker + " txn " + i + ": count " + n + ", expected " + (i + 1));
                            }
                            if (i > 1 && !((org.postgresql.PGStatement) ins.unwrap(org.postgresql.PGStatement.class)).isUseServerPrepare())
                                throw new IllegalStateException("statement not server-prepared");
                        }
                        c.commit();
                    }
                    // DEALLOCATE ALL drops the session's statements (the driver sees the tag
                    // and forgets its cache); the statements are prepared again afterwards.
                    c.setAutoCommit(true);
                    exec(c, "DEALLOCATE ALL");
                    c.setAutoCommit(false);
                    for (int i = 0; i < 5; i++) {
                        Object n = scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'prep' AND id BETWEEN ? AND ?", base, base + 999);
                        if (!Objects.equals(n, txns)) throw new IllegalStateException("worker " + worker + ": " + n + " rows after DEALLOCATE ALL");
                        c.commit();
                    }
                } catch (Exception e) {
                    problems.add("worker " + worker + ": " + e);
                }
            }));
        }
        for (Future<?> f : futures) f.get(120, TimeUnit.SECONDS);
        pool.shutdown();
        expect(problems.isEmpty(), String.join("; ", problems.stream().limit(3).toList()));
        try (Connection c = connect()) {
            expectEq(scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'prep'"), clients * txns, "prepared-statement rows");
        }
    }

    static void batch() throws Exception {
        String items = t("items");
        String ins = "INSERT INTO " + items + " (id, grp, val) VALUES (?, 'batch', ?)";
        try (Connection c = connect(Map.of("prepareThreshold", "1"))) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement(ins)) {
                for (int i = 0; i < 40; i++) {
                    ps.setInt(1, 3000 + i);
                    ps.setInt(2, i);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                expectEq(counts.length, 40, "batch result count");
                for (int n : counts) expectEq(n, 1, "rows per batch entry");
            }
            c.commit();
            // Autocommit: the batch is one implicit transaction; the duplicate fails it whole.
            c.setAutoCommit(true);
            expectState("23505", "batch with a duplicate key", () -> {
                try (PreparedStatement ps = c.prepareStatement(ins)) {
                    for (int id : new int[] {3100, 3101, 3101, 3102}) {
                        ps.setInt(1, id);
                        ps.setInt(2, 1);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
            });
            try (Statement s = c.createStatement()) {
                s.addBatch("INSERT INTO " + items + " (id, grp, val) VALUES (3200, 'batch', 1)");
                s.addBatch("UPDATE " + items + " SET val = val + 1 WHERE id = 3200");
                s.addBatch("INSERT INTO " + items + " (id, grp, val) VALUES (3201, 'batch', 1)");
                expectEq(Arrays.stream(s.executeBatch()).boxed().toList(), List.of(1, 1, 1), "statement batch counts");
            }
        }
        // reWriteBatchedInserts: the batch becomes multi-row INSERTs.
        try (Connection c = connect(Map.of("reWriteBatchedInserts", "true"))) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement(ins)) {
                for (int i = 0; i < 50; i++) {
                    ps.setInt(1, 3300 + i);
                    ps.setInt(2, i);
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            c.commit();
            expectEq(scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'batch'"), 92, "rows after the batches");
            expectEq(rows(c, "SELECT id, val FROM " + items + " WHERE id >= 3100 AND id < 3300 ORDER BY id"), List.of(row(3200, 2), row(3201, 1)), "rows of the failed and statement batches");
            c.commit();
        }
    }

    static void types() throws Exception {
        String blobs = t("blobs");
        List<List<Object>> want = List.of(
                row(1, null, null, null, null),
                row(2, UNICODE, allBytes(), new BigDecimal(NUMERIC), true),
                row(3, "", new byte[0], new BigDecimal("0"), false),
                row(4, "quote ' backslash \\ tab \t newline \n", new byte[] {0, 1, (byte) 255}, new BigDecimal("-1.5"), null));
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + blobs + " (id, txt, bin, num, flag) VALUES (?, ?, ?, ?, ?)")) {
                for (List<Object> r : want) {
                    ps.setInt(1, (Integer) r.get(0));
                    if (r.get(1) == null) ps.setNull(2, Types.VARCHAR); else ps.setString(2, (String) r.get(1));
                    if (r.get(2) == null) ps.setNull(3, Types.BINARY); else ps.setBytes(3, (byte[]) r.get(2));
                    if (r.get(3) == null) ps.setNull(4, Types.NUMERIC); else ps.setBigDecimal(4, (BigDecimal) r.get(3));
                    if (r.get(4) == null) ps.setNull(5, Types.BOOLEAN); else ps.setBoolean(5, (Boolean) r.get(4));
                    ps.executeUpdate();
                }
            }
            c.commit();
            expectEq(rows(c, "SELECT id, txt, bin, num, flag FROM " + blobs + " WHERE id <= 4 ORDER BY id"), want, "round-tripped NULLs, unicode, bytea");
            expectEq(rows(c, "SELECT txt = ?, length(txt), octet_length(txt), octet_length(bin) FROM " + blobs + " WHERE id = 2", UNICODE).get(0),
                    row(true, 13, 25, 256), "server's view of the unicode and bytea values");
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::text IS NULL")) {
                ps.setNull(1, Types.VARCHAR);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    expectEq(rs.getBoolean(1), true, "NULL parameter");
                }
            }
            c.commit();
        }
    }

    static void largeValues() throws Exception {
        String blobs = t("blobs");
        String text = largeText();
        byte[] data = largeBytes();
        try (Connection c = connect()) {
            update(c, "INSERT INTO " + blobs + " (id, txt, bin) VALUES (100, ?, ?)", text, data);
            List<Object> r = rows(c, "SELECT txt, bin FROM " + blobs + " WHERE id = 100").get(0);
            expect(text.equals(r.get(0)), "2 MiB text differs (got " + ((String) r.get(0)).length() + " chars)");
            expect(Arrays.equals(data, (byte[]) r.get(1)), "2 MiB bytea differs (got " + ((byte[]) r.get(1)).length + " bytes)");
            expectEq(rows(c, "SELECT length(txt), octet_length(bin), md5(bin) FROM " + blobs + " WHERE id = 100").get(0),
                    row(text.length(), LARGE, md5(data)), "server's length and md5 of the 2 MiB values");
        }
    }

    static void binary() throws Exception {
        // prepareThreshold=-1 forces server-prepared statements with binary transfer from the
        // first execution; binaryTransfer (the default) asks for binary results.
        String blobs = t("blobs");
        try (Connection c = connect(Map.of("prepareThreshold", "-1", "binaryTransfer", "true"))) {
            c.setAutoCommit(false);
            List<List<Object>> want = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + blobs + " (id, txt, bin, num, flag) VALUES (?, ?, ?, ?, ?)")) {
                for (int i = 0; i < 10; i++) {
                    byte[] b = new byte[i + 1];
                    Arrays.fill(b, (byte) i);
                    List<Object> r = row(200 + i, UNICODE + " " + i, b, new BigDecimal(i).divide(new BigDecimal(4)), i % 2 == 0);
                    want.add(r);
                    ps.setInt(1, 200 + i);
                    ps.setString(2, (String) r.get(1));
                    ps.setBytes(3, b);
                    ps.setBigDecimal(4, (BigDecimal) r.get(3));
                    ps.setBoolean(5, i % 2 == 0);
                    ps.executeUpdate();
                }
                ps.setInt(1, 210);
                ps.setNull(2, Types.VARCHAR);
                ps.setNull(3, Types.BINARY);
                ps.setNull(4, Types.NUMERIC);
                ps.setNull(5, Types.BOOLEAN);
                ps.executeUpdate();
                want.add(row(210, null, null, null, null));
            }
            c.commit();
            expectEq(rows(c, "SELECT id, txt, bin, num, flag FROM " + blobs + " WHERE id >= 200 AND id < 300 ORDER BY id"), want, "rows read with binary transfer");
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int8, ?::float8, ?::timestamptz, ?::uuid")) {
                ps.setLong(1, 1L << 40);
                ps.setDouble(2, 1.5);
                ps.setObject(3, OffsetDateTime.of(2024, 2, 29, 12, 0, 0, 0, ZoneOffset.UTC));
                java.util.UUID u = java.util.UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
                ps.setObject(4, u);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    expectEq(row(rs.getLong(1), rs.getDouble(2), rs.getObject(3, OffsetDateTime.class).toInstant().getEpochSecond(), rs.getObject(4)),
                            row(1L << 40, 1.5, 1709208000L, u), "binary int8/float8/timestamptz/uuid");
                }
            }
            c.commit();
        }
    }

    static String copyLine(List<Object> r) {
        List<String> parts = new ArrayList<>();
        for (Object v : r) parts.add(v == null ? "\\N" : String.valueOf(v));
        return String.join("\t", parts) + "\n";
    }

    static void copy() throws Exception {
        String items = t("items");
        List<List<Object>> want = new ArrayList<>();
        for (int i = 0; i < 500; i++) want.add(row(4000 + i, "copy", i % 7 != 0 ? i : null, i % 3 == 0 ? UNICODE : "r " + i));
        StringBuilder first = new StringBuilder(), second = new StringBuilder(), all = new StringBuilder();
        for (int i = 0; i < 500; i++) (i < 250 ? first : second).append(copyLine(want.get(i)));
        for (List<Object> r : want) all.append(copyLine(r));
        try (Connection c = connect()) {
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            expectEq(cm.copyIn("COPY " + items + " (id, grp, val, note) FROM STDIN", new StringReader(first.toString())), 250L, "rows of the first COPY");
            c.setAutoCommit(false);
            expectEq(cm.copyIn("COPY " + items + " (id, grp, val, note) FROM STDIN", new StringReader(second.toString())), 250L, "rows of the COPY in a transaction");
            c.commit();
            StringWriter out = new StringWriter();
            cm.copyOut("COPY (SELECT id, grp, val, note FROM " + items + " WHERE grp = 'copy' ORDER BY id) TO STDOUT", out);
            c.commit();
            expectEq(out.toString(), all.toString(), "rows copied out");
            c.setAutoCommit(true);
            expectState("22P02", "COPY of bad data", () -> cm.copyIn("COPY " + items + " (id, grp, val) FROM STDIN", new StringReader("4900\tcopy\t1\nnot-a-number\tcopy\t2\n")));
            expectEq(scalar(c, "SELECT count(*)::int FROM " + items + " WHERE grp = 'copy'"), 500, "rows after the failed COPY");
        }
    }

    static void cursor() throws Exception {
        // setFetchSize with autocommit off: one portal read in pieces (Execute with a row
        // limit, PortalSuspended), each piece its own round trip.
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT g, md5(g::text) FROM generate_series(1, ?) g ORDER BY g")) {
                ps.setFetchSize(37);
                ps.setInt(1, 1000);
                try (ResultSet rs = ps.executeQuery()) {
                    int n = 0;
                    while (rs.next()) {
                        n++;
                        if (rs.getInt(1) != n) throw new Expectation("row " + n + " is " + rs.getInt(1));
                    }
                    expectEq(n, 1000, "rows fetched with setFetchSize");
                }
            }
            // Two cursors open at once, read alternately.
            try (Statement a = c.createStatement(); Statement b = c.createStatement()) {
                a.setFetchSize(10);
                b.setFetchSize(7);
                try (ResultSet ra = a.executeQuery("SELECT g FROM generate_series(1, 100) g");
                     ResultSet rb = b.executeQuery("SELECT g FROM generate_series(101, 200) g")) {
                    long sa = 0, sb = 0;
                    while (ra.next() & rb.next()) {
                        sa += ra.getInt(1);
                        sb += rb.getInt(1);
                    }
                    expectEq(List.of(sa, sb), List.of(5050L, 15050L), "sums of the interleaved cursors");
                }
            }
            c.commit();
            expectEq(scalar(c, "SELECT 'usable'"), "usable", "query after the cursors");
            c.commit();
        }
    }

    static void listenNotify() throws Exception {
        if (!mode.equals("session")) throw new Skip(SESSION_ONLY);
        String ch = prefix + "_chan";
        try (Connection listener = connect(); Connection notifier = connect()) {
            exec(listener, "LISTEN " + ch);
            int pid = (Integer) scalar(notifier, "SELECT pg_backend_pid()");
            exec(notifier, "NOTIFY " + ch + ", '" + UNICODE + "'");
            scalar(notifier, "SELECT pg_notify(?, ?)", ch, "second");
            List<List<Object>> got = new ArrayList<>();
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (got.size() < 2 && System.nanoTime() < deadline) {
                PGNotification[] ns = listener.unwrap(PGConnection.class).getNotifications(500);
                if (ns != null) for (PGNotification n : ns) got.add(row(n.getName(), n.getParameter(), n.getPID()));
            }
            expectEq(got, List.of(row(ch, UNICODE, pid), row(ch, "second", pid)), "notifications received");
        }
    }

    static boolean waitRunning(String marker) throws Exception {
        try (Connection w = connect()) {
            for (int i = 0; i < 100; i++) {
                Object n = scalar(w, "SELECT count(*)::int FROM pg_stat_activity WHERE state = 'active' AND query LIKE ? AND pid <> pg_backend_pid()", "%" + marker + "%");
                if (((Integer) n) > 0) return true;
                Thread.sleep(50);
            }
        }
        return false;
    }

    static void cancel() throws Exception {
        String marker = "cancel-" + prefix;
        try (Connection c = connect(); Statement s = c.createStatement()) {
            ExecutorService ex = Executors.newSingleThreadExecutor();
            long started = System.nanoTime();
            Future<String> f = ex.submit(() -> {
                try {
                    s.execute("SELECT pg_sleep(30) /* " + marker + " */");
                    return "pg_sleep(30) was not cancelled";
                } catch (SQLException e) {
                    return e.getSQLState();
                }
            });
            boolean running = waitRunning(marker);
            s.cancel();
            String outcome = f.get(35, TimeUnit.SECONDS);
            double elapsed = (System.nanoTime() - started) / 1e9;
            ex.shutdown();
            expect(running, "the query never showed up as active in pg_stat_activity");
            expectEq(outcome, "57014", "SQLSTATE of the cancelled query");
            expect(elapsed < 10, "cancel took " + elapsed + " s");
            expectEq(scalar(c, "SELECT 'usable'"), "usable", "query after the cancel");
        }
    }

    static void tls() throws Exception {
        String items = t("items");
        String big = "x".repeat(300_000);
        Map<String, String> ssl = new LinkedHashMap<>();
        ssl.put("host", "localhost");
        ssl.put("sslmode", "verify-full");
        ssl.put("sslrootcert", ca);
        try (Connection c = connect(ssl)) {
            c.setAutoCommit(false);
            for (int i = 0; i < 3; i++) update(c, "INSERT INTO " + items + " (id, grp, val, note) VALUES (?, 'tls', ?, ?)", 5000 + i, i, i == 2 ? big : UNICODE);
            c.commit();
            expectEq(rows(c, "SELECT id, length(note) FROM " + items + " WHERE grp = 'tls' ORDER BY id"), List.of(row(5000, 13), row(5001, 13), row(5002, 300000)), "rows written over TLS");
            expect(big.equals(scalar(c, "SELECT note FROM " + items + " WHERE id = 5002")), "300 kB value read over TLS differs");
            c.commit();
            // A cancel of a TLS client's query.
            c.setAutoCommit(true);
            String marker = "tls-cancel-" + prefix;
            try (Statement s = c.createStatement()) {
                ExecutorService ex = Executors.newSingleThreadExecutor();
                long started = System.nanoTime();
                Future<String> f = ex.submit(() -> {
                    try {
                        s.execute("SELECT pg_sleep(30) /* " + marker + " */");
                        return "pg_sleep(30) was not cancelled";
                    } catch (SQLException e) {
                        return e.getSQLState();
                    }
                });
                waitRunning(marker);
                s.cancel();
                String outcome = f.get(35, TimeUnit.SECONDS);
                ex.shutdown();
                expectEq(outcome, "57014", "SQLSTATE of the query cancelled over TLS");
                double elapsed = (System.nanoTime() - started) / 1e9;
                expect(elapsed < 10, "cancel over TLS took " + elapsed + " s");
            }
            expectEq(scalar(c, "SELECT 'usable'"), "usable", "query after the cancel over TLS");
        }
        ssl.put("sslrootcert", badCa);
        try (Connection c = connect(ssl)) {
            throw new Expectation("verify-full accepted a certificate not signed by the given CA");
        } catch (SQLException e) {
            String m = String.valueOf(e.getMessage()) + " " + e.getCause();
            expect(m.contains("PKIX") || m.contains("certif"), "unexpected error with a wrong CA: " + m);
        }
    }

    // ----------------------------------------------------------------------------------- main

    static void report(String scenario, String status, String detail) {
        String d = detail == null ? "" : detail;
        if (d.length() > 600) d = d.substring(0, 600);
        StringBuilder j = new StringBuilder();
        for (char ch : d.toCharArray()) {
            if (ch == '"' || ch == '\\') j.append('\\').append(ch);
            else if (ch < 0x20) j.append(String.format("\\u%04x", (int) ch));
            else j.append(ch);
        }
        System.out.println("@@RESULT {\"scenario\": \"" + scenario + "\", \"status\": \"" + status + "\", \"detail\": \"" + j + "\"}");
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        System.setOut(new java.io.PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8));
        List<String> only = new ArrayList<>();
        for (String s : env("MATRIX_SCENARIOS", "").split(",")) if (!s.isEmpty()) only.add(s);
        Map<String, Body> bodies = new LinkedHashMap<>();
        bodies.put("crud", Scenarios::crud);
        bodies.put("rollback", Scenarios::rollback);
        bodies.put("error_recovery", Scenarios::errorRecovery);
        bodies.put("prepared_concurrency", Scenarios::preparedConcurrency);
        bodies.put("batch", Scenarios::batch);
        bodies.put("types", Scenarios::types);
        bodies.put("large_values", Scenarios::largeValues);
        bodies.put("binary", Scenarios::binary);
        bodies.put("copy", Scenarios::copy);
        bodies.put("cursor", Scenarios::cursor);
        bodies.put("listen_notify", Scenarios::listenNotify);
        bodies.put("cancel", Scenarios::cancel);
        bodies.put("tls", Scenarios::tls);
        for (String name : SCENARIOS) {
            if (!only.isEmpty() && !only.contains(name)) continue;
            System.out.println("@@BEGIN " + name);
            long started = System.nanoTime();
            try {
                bodies.get(name).run();
                report(name, "pass", String.format("%.1fs", (System.nanoTime() - started) / 1e9));
            } catch (Skip e) {
                report(name, "skip", e.getMessage());
            } catch (Expectation e) {
                System.out.println("[" + name + "] expectation failed: " + e.getMessage());
                report(name, "fail", e.getMessage());
            } catch (Throwable e) {
                e.printStackTrace(System.out);
                String state = e instanceof SQLException se && se.getSQLState() != null ? " (SQLSTATE " + se.getSQLState() + ")" : "";
                report(name, "fail", e.getClass().getSimpleName() + ": " + String.valueOf(e.getMessage()).replaceAll("\\s+", " ") + state);
            }
        }
        System.exit(0);
    }
}
