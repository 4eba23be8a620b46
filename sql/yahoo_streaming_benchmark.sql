-- The Yahoo streaming benchmark (YSB) query.
--
-- YSB reads ad events, keeps the views, joins each ad to its campaign
-- (reference data, in Redis in the original) and counts views per campaign
-- per 10 s window. Here the reference data is an ordinary table, and the
-- join is Flink's temporal-join spelling. Runs as is on the built-in
-- generator (1000 ads, ten per campaign):
--   psql -h 127.0.0.1 -p 5433 -U sluice -f sql/yahoo_streaming_benchmark.sql

CREATE TABLE ad_events (
  user_id STRING, page_id STRING, ad_id STRING,
  ad_type STRING, event_type STRING, event_time TIMESTAMP(3), ip_address STRING,
  WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND
) WITH ('connector' = 'datagen', 'rows-per-second' = '10000');

-- Which campaign each ad belongs to: ad-0000 .. ad-0999, ten per campaign.
CREATE TABLE ad_campaigns (ad_id STRING PRIMARY KEY, campaign_id STRING NOT NULL);

INSERT INTO ad_campaigns
SELECT 'ad-' || lpad(CAST(n AS VARCHAR), 4, '0'),
       'camp-' || lpad(CAST(n / 10 AS VARCHAR), 3, '0')
FROM generate_series(0, 999) AS n;

CREATE MATERIALIZED VIEW campaign_views_10s AS
SELECT window_start, window_end, c.campaign_id, COUNT(*) AS views
FROM TABLE(TUMBLE(TABLE ad_events, DESCRIPTOR(event_time), INTERVAL '10' SECOND)) AS e
JOIN ad_campaigns FOR SYSTEM_TIME AS OF e.event_time AS c ON e.ad_id = c.ad_id
WHERE e.event_type = 'view'
GROUP BY window_start, window_end, c.campaign_id;

-- Then: SELECT * FROM campaign_views_10s ORDER BY window_start DESC, views DESC LIMIT 10;
