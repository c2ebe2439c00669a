-- 0003: a row that comes back to work becomes the work of the node that brought it back (issue #13 item 2;
-- engine/cluster/leases.py), PostgreSQL.
-- A dead delivery re-queued (DLQ replay, or a remap whose INSERT ... ON CONFLICT re-queues it) and a
-- message reset to `received` (remap) keep the owner they had, so the node that re-queued them would hand
-- them to its own worker or pipeline while their old owner might claim them too: sent twice. This trigger
-- gives them to the node whose connection makes the change (its session settings, as the column defaults
-- of 0002), with a fresh lease. `UPDATE OF state` + `WHEN`: other updates (a row marked sent) only pay the
-- WHEN test; nothing else changes for them.
CREATE OR REPLACE FUNCTION yonglink_take_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.owner := nullif(current_setting('yonglink.node_id', true), '');
    IF TG_TABLE_NAME = 'deliveries' THEN
        NEW.lease_until := extract(epoch from clock_timestamp())
            + coalesce(nullif(current_setting('yonglink.lease', true), '')::double precision, 0);
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS deliveries_requeued ON deliveries;
CREATE TRIGGER deliveries_requeued BEFORE UPDATE OF state ON deliveries FOR EACH ROW
    WHEN (OLD.state <> 'queued' AND NEW.state = 'queued') EXECUTE FUNCTION yonglink_take_back();
DROP TRIGGER IF EXISTS messages_received_again ON messages;
CREATE TRIGGER messages_received_again BEFORE UPDATE OF state ON messages FOR EACH ROW
    WHEN (OLD.state <> 'received' AND NEW.state = 'received') EXECUTE FUNCTION yonglink_take_back();
