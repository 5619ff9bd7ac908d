-- An endpoint's figures (GET /v1/webhooks/{id}/stats) read its recent attempts and count its
-- pending deliveries and dead letters. Attempts by start time: the window is one range of this index, newest
-- last, so neither the sums nor the newest failure read the endpoint's older attempts.
CREATE INDEX webhook_attempts_started ON webhook_attempts (endpoint_id, started_at);
-- Dead letters of an endpoint. With this index and the pending-only webhook_deliveries_order,
-- the two counts are index ranges that never read a delivery row. It is written only when a delivery dead-letters or is revived.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id) WHERE status = 'failed';
