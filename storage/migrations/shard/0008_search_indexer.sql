-- Search off the commit path (issue 21).
--
-- Until now ``messages.tsv`` (0002) was a generated column with a GIN index
-- (``messages_tsv``, fastupdate off since 0005), so every batch of
-- parley_append_batch paid the full-text work inside the transaction the ack
-- waits for: measured with realistic chat text, 125 us of PostgreSQL CPU per
-- message, more than half the backend's time (docs/benchmarks.md, "Issue 21").
--
-- Now:
--
-- * ``message_search`` holds the index: one row per searchable message (not
--   deleted), its tsvector, and the keys search scopes by.  Only the indexer
--   (storage/pg_search.py) writes it.
-- * ``search_queue`` is the indexer's durable cursor: one row per message
--   whose text changed since it was last indexed.  The batch insert, the edit
--   and the delete write it in their own transaction, so a committed change
--   is always queued (nothing is lost) and an aborted one never is.
-- * The indexer takes up to a batch of queue rows (FOR UPDATE SKIP LOCKED),
--   brings ``message_search`` to the messages' *current* state (upsert the
--   tsvector of a live message, delete the row of a deleted one) and deletes
--   the queue rows, all in one transaction.  A crash before its commit
--   leaves the rows queued and the index as it was; after it, both are
--   done.  Re-indexing a message is idempotent (the row is a function of the
--   message's current text), and ``message_search`` has one row per message
--   at most (its primary key), so nothing is ever indexed twice.
--
-- One queue row per message (the primary key), not one per change: the row
-- is the mutex of a message's indexing.  A change that finds the row queued
-- updates it (INSERT ... ON CONFLICT DO UPDATE), which waits while an
-- indexer holds it and, once that indexer has deleted it and committed,
-- inserts it again: so a change committed after the indexer read the text
-- is always indexed by a later batch.  (DO NOTHING would not wait for the
-- indexer's row lock and could lose that change.)

CREATE TABLE message_search (
    message_id      BIGINT PRIMARY KEY,              -- messages.id
    workspace_id    BIGINT NOT NULL,                 -- the tenant boundary, as everywhere
    channel_id      BIGINT NOT NULL,                 -- search is scoped by readable channel
    tsv             tsvector NOT NULL                -- to_tsvector('simple', text), as in 0002
);

-- Existing messages keep their index: copy the vectors already computed.
INSERT INTO message_search (message_id, workspace_id, channel_id, tsv)
SELECT id, workspace_id, channel_id, tsv FROM messages WHERE deleted_at IS NULL;

-- Built after the copy (one sort instead of row-by-row inserts).  fastupdate
-- is back on here: new entries go to the pending list and the merge into
-- the main index happens at most every 1 MB (gin_pending_list_limit, in kB)
-- inside an indexer batch, which no ack waits for.  Kept small so one merge
-- is a short stall of the indexer, not of search (a search also scans the
-- pending list, which is cheap while it is small).
CREATE INDEX message_search_tsv ON message_search USING GIN (tsv)
    WITH (fastupdate = on, gin_pending_list_limit = 1024);

-- Dropping the column drops messages_tsv with it: nothing on the commit
-- path computes a tsvector any more.
ALTER TABLE messages DROP COLUMN tsv;

CREATE TABLE search_queue (
    message_id      BIGINT PRIMARY KEY,              -- one queued change per message
    op              TEXT NOT NULL CHECK (op IN ('insert', 'edit', 'delete')),  -- the latest
    queued_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()  -- for the lag metric
);

-- parley_append_batch (0006) again, with one change: step 4 queues every
-- stored message for the indexer in the same statement.  Same signature,
-- return codes, generic plan, statements and invariants as 0006 (see 0005
-- and 0006 for the reasons behind each step).  New message ids never
-- conflict with a queued row (the writer allocates fresh snowflakes), so a
-- plain INSERT suffices.
CREATE OR REPLACE FUNCTION parley_append_batch(
    p_channel BIGINT[], p_user BIGINT[], p_workspace BIGINT[], p_id BIGINT[],
    p_text TEXT[], p_client TEXT[], p_thread BIGINT[], p_created TIMESTAMPTZ[],
    p_also BOOLEAN[])
RETURNS TABLE (o_n INT, o_code SMALLINT, o_seq BIGINT)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    st SMALLINT[];     -- per message: 0 stored, 1 not_in_channel, 2 archived, 3 duplicate
    dups BIGINT[];
    fresh_ids BIGINT[];
    keyed BIGINT;
    d BIGINT;
    wanted INT;
    locked INT;
BEGIN
    -- 1. Membership and channel state (visibility first, as in 0006).
    SELECT array_agg(CASE
               WHEN c.workspace_id IS DISTINCT FROM v.workspace_id
                    OR m.user_id IS NULL THEN 1
               WHEN c.archived_at IS NOT NULL THEN 2
               ELSE 0 END ORDER BY v.n)
      INTO st
      FROM unnest(p_channel, p_user, p_workspace) WITH ORDINALITY
           AS v(channel_id, user_id, workspace_id, n)
      LEFT JOIN channels c ON c.id = v.channel_id
      LEFT JOIN channel_members m ON m.channel_id = v.channel_id AND m.user_id = v.user_id;

    -- 2. Idempotency keys.
    WITH k AS (
        SELECT v.user_id, v.client, v.id, v.n
          FROM unnest(p_user, p_client, p_id) WITH ORDINALITY AS v(user_id, client, id, n)
         WHERE v.client IS NOT NULL AND st[v.n] = 0
    ), fresh AS (
        INSERT INTO message_idempotency (user_id, client_msg_id, message_id)
        SELECT DISTINCT ON (k.user_id, k.client) k.user_id, k.client, k.id
          FROM k ORDER BY k.user_id, k.client, k.n
        ON CONFLICT DO NOTHING
        RETURNING message_id
    )
    SELECT (SELECT count(*) FROM k), (SELECT array_agg(fresh.message_id) FROM fresh)
      INTO keyed, fresh_ids;
    IF coalesce(cardinality(fresh_ids), 0) < keyed THEN
        SELECT array_agg(v.n) INTO dups
          FROM unnest(p_client, p_id) WITH ORDINALITY AS v(client, id, n)
         WHERE v.client IS NOT NULL AND st[v.n] = 0
           AND v.id <> ALL (coalesce(fresh_ids, '{}'));
        FOREACH d IN ARRAY dups LOOP
            st[d] := 3;
        END LOOP;
    END IF;

    -- 3. Counter rows, locked in channel-id order (the deadlock rule).
    SELECT count(DISTINCT v.channel_id) INTO wanted
      FROM unnest(p_channel) WITH ORDINALITY AS v(channel_id, n) WHERE st[v.n] = 0;
    SELECT count(*) INTO locked FROM (
        SELECT 1 FROM channel_counters
         WHERE channel_id IN (SELECT v.channel_id FROM unnest(p_channel) WITH ORDINALITY
                                  AS v(channel_id, n) WHERE st[v.n] = 0)
         ORDER BY channel_id FOR UPDATE) AS l;
    IF locked <> wanted THEN
        RAISE EXCEPTION 'parley_append_batch: % of % channels have no counter row',
            wanted - locked, wanted;
    END IF;

    -- 4. Seqs in batch order per channel, the rows, the counters, and the
    -- indexer's queue rows.
    RETURN QUERY
    WITH w AS (
        SELECT v.*, c.last_seq + row_number() OVER (PARTITION BY v.channel_id ORDER BY v.n)
                    AS new_seq
          FROM unnest(p_channel, p_user, p_workspace, p_id, p_text, p_client, p_thread,
                      p_created, p_also) WITH ORDINALITY
               AS v(channel_id, user_id, workspace_id, id, body, client, thread, created,
                    also, n)
          JOIN channel_counters c ON c.channel_id = v.channel_id
         WHERE st[v.n] = 0
    ), ins AS (
        INSERT INTO messages (channel_id, seq, id, workspace_id, user_id, text,
                              client_msg_id, thread_root_id, created_at, also_in_channel)
        SELECT w.channel_id, w.new_seq, w.id, w.workspace_id, w.user_id, w.body,
               w.client, w.thread, w.created, w.also
          FROM w
    ), upd AS (
        UPDATE channel_counters c SET last_seq = x.top
          FROM (SELECT w.channel_id, max(w.new_seq) AS top FROM w GROUP BY w.channel_id) AS x
         WHERE c.channel_id = x.channel_id
    ), q AS (
        INSERT INTO search_queue (message_id, op) SELECT w.id, 'insert' FROM w
    )
    SELECT w.n::INT, 0::SMALLINT, w.new_seq FROM w
    UNION ALL
    SELECT s.n::INT, s.code, NULL::BIGINT
      FROM unnest(st) WITH ORDINALITY AS s(code, n) WHERE s.code <> 0;
END
$$;
