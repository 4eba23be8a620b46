import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;

// Nexmark queries as written, over the JSON events the Sluice benchmark
// wrote (their DDL in _ddl.sql beside them), in a local MiniCluster with
// Nexmark's own settings (RocksDB state, mini-batch, split distinct
// aggregation), timed from the INSERT to the job's end.
//
//   FlinkNexmark <ddl.sql> <queries dir> <out dir> <parallelism> <q>...
public class FlinkNexmark {
    static List<String> statements(String text) {
        StringBuilder sql = new StringBuilder();
        for (String line : text.split("\n")) {
            if (!line.trim().startsWith("--")) {
                sql.append(line).append('\n');
            }
        }
        List<String> out = new ArrayList<>();
        for (String s : sql.toString().split(";")) {
            if (!s.trim().isEmpty()) {
                out.add(s.trim());
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        String ddl = Files.readString(Path.of(args[0]));
        Path queries = Path.of(args[1]);
        String outDir = args[2];
        String parallelism = args[3];
        for (int i = 4; i < args.length; i++) {
            String q = args[i];
            Configuration conf = new Configuration();
            conf.setString("parallelism.default", parallelism);
            conf.setString("taskmanager.numberOfTaskSlots", parallelism);
            // Nexmark's own configuration (nexmark-flink conf/config.yaml).
            conf.setString("state.backend.type", "rocksdb");
            conf.setString("state.backend.incremental", "true");
            conf.setString("execution.checkpointing.interval", "180s");
            conf.setString("table.exec.mini-batch.enabled", "true");
            conf.setString("table.exec.mini-batch.allow-latency", "2s");
            conf.setString("table.exec.mini-batch.size", "50000");
            conf.setString("table.optimizer.distinct-agg.split.enabled", "true");
            TableEnvironment t = TableEnvironment.create(
                EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(conf).build());
            for (String s : statements(ddl)) {
                t.executeSql(s);
            }
            String text = Files.readString(queries.resolve(q + ".sql"))
                .replace("${NEXMARK_DIR}", outDir)
                .replace("${FLINK_HOME}", outDir)
                .replace("${SUBMIT_TIME}", "t");
            long start = 0;
            TableResult last = null;
            try {
                for (String s : statements(text)) {
                    if (s.toUpperCase().startsWith("INSERT")) {
                        start = System.nanoTime();
                    }
                    last = t.executeSql(s);
                }
                last.await();
                double secs = (System.nanoTime() - start) / 1e9;
                System.out.println("flink " + q + " seconds " + secs);
            } catch (Exception e) {
                String why = String.valueOf(e.getMessage()).split("\n")[0];
                System.out.println("flink " + q + " failed " + why);
            }
        }
    }
}
