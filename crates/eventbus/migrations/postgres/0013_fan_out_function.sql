-- One round trip for a webhook fan-out step (src/store/postgres/webhook.rs, `fan_out`): in one
-- statement, which commits by itself, lock the endpoints version and the fan-out cursor (in the
-- global lock order), compare them with the step's, and when they match insert the step's
-- deliveries, due at `now`, and move the cursor. Each statement of a volatile function sees a
-- fresh snapshot, so the values compared are those committed before the locks were granted, as
-- in a transaction. Returns the cursor and the version, and whether the step was applied.
--
-- The step commits without waiting for its WAL flush (`synchronous_commit = off` for this
-- transaction only): what a power cut can take from it is the step itself, whose events are
-- durable, so the fan-out matches them again after the restart and queues the same deliveries
-- (at least once, with the same `webhook-id`). Any later durable commit (a publish, an attempt's
-- record) flushes the step with it. The delivery ids of a lost step may be handed out again
-- (the identity's sequence is flushed with the commits), so records match a delivery by id,
-- endpoint and event (src/store/postgres/webhook/record.rs).
CREATE FUNCTION eventbus_fan_out(
    from_seq int8, to_seq int8, version int8, now int8,
    endpoints text[], seqs int8[], ids text[], types text[]
) RETURNS TABLE (cursor int8, endpoints_version int8, applied bool)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v int8;
    c int8;
BEGIN
    -- First, so that a refused step (which locked the rows) does not wait for a flush either
    -- while it holds them.
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT value INTO v FROM webhook_state WHERE name = 'endpoints_version' FOR UPDATE;
    SELECT value INTO c FROM webhook_state WHERE name = 'fanout_cursor' FOR UPDATE;
    IF c IS DISTINCT FROM from_seq OR v IS DISTINCT FROM version THEN
        RETURN QUERY SELECT coalesce(c, 0), coalesce(v, 0), false;
        RETURN;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, event_seq, event_id, event_type, status,
                                    next_attempt_at, created_at, updated_at)
    SELECT u.e, u.s, u.i, u.t, 'pending', now, now, now
    FROM UNNEST(endpoints, seqs, ids, types) AS u(e, s, i, t);
    UPDATE webhook_state SET value = to_seq WHERE name = 'fanout_cursor';
    RETURN QUERY SELECT to_seq, v, true;
END
$$;
