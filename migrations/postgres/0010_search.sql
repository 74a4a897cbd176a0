-- Full-text search over transcripts and summaries: one row per passage (a transcript segment, a
-- summary, a key point) with its moment, and its English text search vector (GIN-indexed).
CREATE TABLE search_passages (
    id BIGSERIAL PRIMARY KEY,
    video_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    start DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX search_passages_tsv ON search_passages USING GIN (tsv);
CREATE INDEX search_passages_video ON search_passages (video_id, kind);
CREATE INDEX search_passages_channel ON search_passages (channel_id);
