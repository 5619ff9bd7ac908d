-- A claim takes an endpoint's due deliveries in (next_attempt_at, event_seq) order, LIMIT the
-- endpoint's free lanes. With the index on (endpoint_id, next_attempt_at) alone, PostgreSQL read
-- and sorted every due delivery of the endpoint for each claim, so a claim cost grew with the
-- backlog (2,500 rows sorted to take 8; docs/benchmarks.md, "Webhooks on PostgreSQL"). With
-- event_seq in the index the scan yields the claim's order and stops at the LIMIT.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at, event_seq)
    WHERE status = 'pending';
-- A claim's lease changes only lease_until, which no index holds: room left on each page lets
-- that update stay on the page (a HOT update) instead of writing a new entry in every index.
ALTER TABLE webhook_deliveries SET (fillfactor = 70);
