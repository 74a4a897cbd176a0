-- Each sink (the RabbitMQ fanout exchange, Kafka) has its own list of events still to publish,
-- so that a broker that is down holds back only its own events.
CREATE TABLE outbox_pending (
    outbox_id BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    sink      TEXT NOT NULL,
    PRIMARY KEY (sink, outbox_id)
);
CREATE INDEX outbox_pending_event ON outbox_pending (outbox_id);

INSERT INTO outbox_pending (outbox_id, sink)
SELECT id, sink FROM outbox, unnest(ARRAY['fanout', 'kafka']) AS sink WHERE published_at IS NULL;

DROP INDEX outbox_unpublished;
