-- The two statements on every webhook delivery's path keep their plans for the session instead
-- of planning each call again. The bus's sessions use `plan_cache_mode = force_custom_plan`
-- (src/store/postgres/db.rs) because event queries are skewed; for these two, planning cost
-- more than running (on a 2-core machine about 0.4 ms of planning against 0.1 ms of execution
-- for a claim), and their plans do not depend on the table's size: the fan-out step inserts from
-- its arrays and reads two rows by key, and the claim walks each endpoint's due deliveries in
-- the order of the `webhook_deliveries_due` index and stops at its limit, the plan chosen even
-- on an empty table.
ALTER FUNCTION eventbus_fan_out(int8, int8, int8, int8, text[], int8[], text[], text[])
    SET plan_cache_mode = force_generic_plan;

-- A claim of unordered endpoints in one statement, which commits by itself without waiting for
-- its WAL flush (src/store/postgres/webhook/claim.rs, `claim_unordered`): each endpoint's due
-- deliveries in due order, locked with SKIP LOCKED, at most `rooms[i]` of endpoint `eids[i]`, the
-- first `lim` in endpoint order leased until `lease`; an endpoint disabled or made ordered since
-- the caller read the list is passed over. Returns the endpoints version with each leased
-- delivery, or one row with a null delivery when none was.
CREATE FUNCTION eventbus_claim_unordered(
    eids text[], rooms int8[], due int8, lim int8, lease int8
) RETURNS TABLE (version int8, delivery webhook_deliveries)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH v AS (SELECT s.value FROM webhook_state s WHERE s.name = 'endpoints_version'),
         c AS (SELECT d.id AS claimed
               FROM UNNEST(eids, rooms) WITH ORDINALITY AS u(eid, room, ord)
               JOIN webhook_endpoints e ON e.id = u.eid AND NOT e.disabled AND NOT e.ordered
               CROSS JOIN LATERAL
                   (SELECT w.id, w.next_attempt_at, w.event_seq FROM webhook_deliveries w
                    WHERE w.endpoint_id = u.eid AND w.status = 'pending'
                      AND w.next_attempt_at <= due AND w.lease_until <= due
                    ORDER BY w.next_attempt_at, w.event_seq LIMIT u.room
                    FOR UPDATE SKIP LOCKED) d
               ORDER BY u.ord, d.next_attempt_at, d.event_seq LIMIT lim),
         leased AS (UPDATE webhook_deliveries w SET lease_until = lease FROM c
                    WHERE w.id = c.claimed RETURNING w AS row)
    SELECT v.value, l.row FROM v LEFT JOIN leased l ON true;
END
$$;
