-- An endpoint's figures (GET /v1/webhooks/{id}/stats) read its recent attempts and count its
-- pending deliveries and dead letters. Same indexes as SQLite's 0011_webhook_stats. Attempts by
-- start time: the window is one range of this index, newest last, so neither the sums nor the
-- newest failure read the endpoint's older attempts. `IF NOT EXISTS`: on a large attempt log an
-- operator may build it beforehand with CREATE INDEX CONCURRENTLY (docs/webhooks.md).
CREATE INDEX IF NOT EXISTS webhook_attempts_started ON webhook_attempts (endpoint_id, started_at);
-- Dead letters of an endpoint. With this index and the pending-only webhook_deliveries_order,
-- the two counts are index ranges. It is written only when a delivery dead-letters or is
-- revived; status changes were never HOT updates (the pending-only indexes name the column),
-- and lease updates still are.
CREATE INDEX IF NOT EXISTS webhook_deliveries_failed ON webhook_deliveries (endpoint_id) WHERE status = 'failed';
