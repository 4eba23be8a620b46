-- Live KPIs per cell from a call-record stream.
--
-- Runs as is on the built-in generator (no Kafka needed):
--   psql -h 127.0.0.1 -p 5433 -U sluice -f sql/telecom_kpis.sql
-- For Kafka, replace the WITH clause of `calls` by
--   WITH ('connector' = 'kafka', 'topic' = 'calls',
--         'properties.bootstrap.servers' = 'localhost:9092',
--         'scan.startup.mode' = 'earliest-offset', 'format' = 'json')

CREATE TABLE calls (
  event_time BIGINT, cell_id STRING, msisdn STRING, status STRING, duration_ms INT,
  ts AS TO_TIMESTAMP_LTZ(event_time, 3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'datagen', 'rows-per-second' = '5000');

-- Calls, failures, failure rate, average duration and distinct subscribers
-- per cell per minute; in-progress minutes update continuously.
CREATE MATERIALIZED VIEW cell_kpi_1m AS
SELECT window_start, window_end, cell_id,
       COUNT(*) AS calls,
       COUNT(*) FILTER (WHERE status <> 'ok') AS failures,
       CAST(COUNT(*) FILTER (WHERE status <> 'ok') AS DOUBLE) / COUNT(*) AS failure_rate,
       AVG(duration_ms) FILTER (WHERE status = 'ok') AS avg_duration_ms,
       COUNT(DISTINCT msisdn) AS subscribers
FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, cell_id;

-- Sliding five-minute failure counts every 30 s, final rows only.
CREATE MATERIALIZED VIEW cell_failures_5m AS
SELECT window_start, window_end, cell_id, COUNT(*) AS failures
FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '30' SECOND, INTERVAL '5' MINUTE))
WHERE status IN ('dropped', 'failed')
GROUP BY window_start, window_end, cell_id
EMIT ON WINDOW CLOSE;

-- The alarm condition: cells with at least 10 failed or dropped calls in a
-- minute. Rows appear (and disappear) as the counts cross the threshold.
CREATE MATERIALIZED VIEW cell_alarms AS
SELECT window_start, cell_id, COUNT(*) AS failures
FROM TABLE(TUMBLE(TABLE calls, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE status IN ('dropped', 'failed')
GROUP BY window_start, window_end, cell_id
HAVING COUNT(*) >= 10;

-- Subscriber sessions: calls less than 30 s apart; events up to a minute
-- late still update their session.
CREATE MATERIALIZED VIEW subscriber_sessions WITH ('allowed-lateness' = '1 min') AS
SELECT window_start, window_end, msisdn, COUNT(*) AS calls,
       SUM(duration_ms) AS talk_ms
FROM TABLE(SESSION(TABLE calls PARTITION BY msisdn, DESCRIPTOR(ts), INTERVAL '30' SECOND))
GROUP BY window_start, window_end, msisdn;

-- Calls per cell since the start of the hour, every 10 minutes of it
-- (Flink's CUMULATE), shown in progress every 10 s.
CREATE MATERIALIZED VIEW cell_calls_hour_so_far AS
SELECT window_start, window_end, cell_id, COUNT(*) AS calls
FROM TABLE(CUMULATE(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' MINUTE, INTERVAL '1' HOUR))
GROUP BY window_start, window_end, cell_id
EMIT EVERY INTERVAL '10' SECOND;

-- Calls and failures per cell since the start (rows change as calls
-- come), and how many cells are in each failure-rate decile: a view over a
-- view whose rows change, where each cell moves between deciles as its
-- counts change (its old row is taken back from its old decile).
CREATE MATERIALIZED VIEW cell_totals AS
SELECT cell_id, COUNT(*) AS calls, COUNT(*) FILTER (WHERE status <> 'ok') AS failures
FROM calls GROUP BY cell_id;

CREATE MATERIALIZED VIEW cells_by_failure_decile AS
SELECT failures * 10 / calls AS decile, COUNT(*) AS cells, SUM(calls) AS calls,
       MAX(failures) AS most_failures
FROM cell_totals GROUP BY failures * 10 / calls;

-- Then, for example:
--   SELECT * FROM cell_kpi_1m ORDER BY window_start DESC, calls DESC LIMIT 10;
--   SELECT * FROM cell_alarms ORDER BY window_start DESC, failures DESC;
--   SELECT name, status, rows_in, late_rows, watermark FROM sluice.jobs;
--   SELECT * FROM sluice.late_rows ORDER BY seen_at DESC LIMIT 10;
