-- A claim takes an endpoint's due deliveries in (next_attempt_at, event_seq) order, LIMIT the
-- endpoint's free lanes. With the index on (endpoint_id, next_attempt_at) alone, each claim
-- sorted every due delivery of the endpoint in a temporary B-tree, a cost that grew with the
-- backlog. With event_seq in the index the scan yields the claim's order and stops at the LIMIT.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at, event_seq)
    WHERE status = 'pending';
