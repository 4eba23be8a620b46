-- The Yahoo streaming benchmark query, as far as Sluice supports it today.
--
-- YSB reads ad events, keeps the views, joins each ad to its campaign and
-- counts views per campaign per 10 s window. Stream-table joins come with
-- issue 5; until then the events carry their campaign id, which gives the
-- same counts. Runs as is on the built-in generator:
--   psql -h 127.0.0.1 -p 5433 -U sluice -f sql/yahoo_streaming_benchmark.sql

CREATE TABLE ad_events (
  user_id STRING, page_id STRING, ad_id STRING, campaign_id STRING,
  ad_type STRING, event_type STRING, event_time TIMESTAMP(3), ip_address STRING,
  WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND
) WITH ('connector' = 'datagen', 'rows-per-second' = '10000');

CREATE MATERIALIZED VIEW campaign_views_10s AS
SELECT window_start, window_end, campaign_id, COUNT(*) AS views
FROM TABLE(TUMBLE(TABLE ad_events, DESCRIPTOR(event_time), INTERVAL '10' SECOND))
WHERE event_type = 'view'
GROUP BY window_start, window_end, campaign_id;

-- Then: SELECT * FROM campaign_views_10s ORDER BY window_start DESC, views DESC LIMIT 10;
