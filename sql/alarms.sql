-- Alarms to Kafka: cells whose failed or dropped calls in a sliding minute
-- reach the cell's own threshold (reference data in an ordinary table) are
-- written to the topic `alarms`, once per window, when the window closes:
-- in Kafka transactions, so a read_committed consumer sees each alarm once
-- even across crashes.
--
-- Needs a Kafka broker at 127.0.0.1:9092 with the topics `calls` (JSON call
-- records) and `alarms` (see the README's Kafka section):
--   psql -h 127.0.0.1 -p 5433 -U sluice -f sql/alarms.sql

CREATE TABLE calls (
  event_time BIGINT, cell_id STRING, msisdn STRING, status STRING, duration_ms INT,
  ts AS TO_TIMESTAMP_LTZ(event_time, 3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'calls',
        'properties.bootstrap.servers' = '127.0.0.1:9092',
        'scan.startup.mode' = 'earliest-offset', 'format' = 'json');

-- Each cell's region and alarm threshold; change them at any time (UPDATE
-- cells SET alarm_threshold = 8 WHERE ...): later calls use the new row.
CREATE TABLE cells (cell_id STRING PRIMARY KEY, region STRING, alarm_threshold INT NOT NULL);

INSERT INTO cells VALUES
  ('cell-0001', 'north', 5),
  ('cell-0002', 'north', 5),
  ('cell-0003', 'south', 3);

-- Failures per cell in one-minute windows sliding every 10 s, final rows of
-- the windows at or above the cell's threshold.
CREATE MATERIALIZED VIEW cell_alarms_1m AS
SELECT window_start, window_end, e.cell_id, c.region, COUNT(*) AS failures,
       MAX(c.alarm_threshold) AS threshold
FROM TABLE(HOP(TABLE calls, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE)) AS e
JOIN cells AS c ON e.cell_id = c.cell_id
WHERE e.status IN ('dropped', 'failed')
GROUP BY window_start, window_end, e.cell_id, c.region
HAVING COUNT(*) >= MAX(c.alarm_threshold)
EMIT ON WINDOW CLOSE;

CREATE SINK alarms FROM cell_alarms_1m WITH (
  'connector' = 'kafka', 'topic' = 'alarms',
  'properties.bootstrap.servers' = '127.0.0.1:9092', 'format' = 'json',
  'sink.delivery-guarantee' = 'exactly-once');

-- Then, for example:
--   SELECT * FROM cell_alarms_1m ORDER BY window_start DESC LIMIT 10;
--   kcat -b 127.0.0.1:9092 -t alarms -C
