-- One round trip for a group of new events (src/store/postgres/commit.rs, the fast path): in one
-- statement, which commits by itself, take the append lock, check that none of the ids is
-- stored, number the rows after max(seq) and notify the new head. Each statement of a volatile
-- function sees a fresh snapshot, so max(seq) is read after the lock, as the committer's
-- transaction does. Returns the seq before the group, or -1 (nothing written) when an id is
-- already stored: the committer then settles duplicates in its transaction.
CREATE FUNCTION eventbus_append(
    lock_key int4, schema_key int4, channel text,
    ids text[], types text[], tss int8[], projects text[], tenants text[], users text[],
    payloads text[], metas text[]
) RETURNS int8 LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    prev int8;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key, schema_key);
    IF EXISTS (SELECT 1 FROM events WHERE id = ANY(ids)) THEN
        RETURN -1;
    END IF;
    SELECT coalesce(max(seq), 0) INTO prev FROM events;
    INSERT INTO events (seq, id, type, ts, project_id, tenant_id, user_id, payload, metadata)
    SELECT prev + u.n, u.id, u.type, u.ts, u.project_id, u.tenant_id, u.user_id, u.payload,
           u.metadata
    FROM UNNEST(ids, types, tss, projects, tenants, users, payloads, metas)
         WITH ORDINALITY AS u(id, type, ts, project_id, tenant_id, user_id, payload, metadata, n);
    PERFORM pg_notify(channel, (prev + cardinality(ids))::text);
    RETURN prev;
END
$$;
