import org.apache.flink.configuration.Configuration;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

// The Sluice benchmark query in Flink SQL, in a local MiniCluster.
public class FlinkBench {
    public static void main(String[] args) throws Exception {
        String path = args[0];
        String parallelism = args[1];
        Configuration conf = new Configuration();
        conf.setString("parallelism.default", parallelism);
        conf.setString("taskmanager.numberOfTaskSlots", parallelism);
        TableEnvironment t = TableEnvironment.create(
            EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(conf).build());
        t.executeSql("CREATE TABLE calls (event_time BIGINT, cell_id STRING, msisdn STRING, status STRING, duration_ms INT, "
            + "ts AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) "
            + "WITH ('connector' = 'filesystem', 'path' = '" + path + "', 'format' = 'json')");
        t.executeSql("CREATE TABLE sink (window_start TIMESTAMP(3), window_end TIMESTAMP(3), cell_id STRING, "
            + "calls BIGINT, total_ms BIGINT, avg_ms INT) WITH ('connector' = 'blackhole')");
        long start = System.nanoTime();
        TableResult r = t.executeSql("INSERT INTO sink SELECT window_start, window_end, cell_id, COUNT(*), "
            + "SUM(duration_ms), AVG(duration_ms) FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
            + "GROUP BY window_start, window_end, cell_id");
        r.await();
        double secs = (System.nanoTime() - start) / 1e9;
        System.out.println("flink seconds " + secs);
    }
}
