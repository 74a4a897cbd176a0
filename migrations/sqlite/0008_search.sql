-- Full-text search over transcripts and summaries: one row per passage (a transcript segment, a
-- summary, a key point) with its moment; an FTS5 index over their text (porter stemming), kept
-- in step by triggers.
CREATE TABLE search_passages (
    id INTEGER PRIMARY KEY,
    video_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    start REAL NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX search_passages_video ON search_passages (video_id, kind);

CREATE VIRTUAL TABLE search_fts USING fts5 (
    text,
    content = 'search_passages',
    content_rowid = 'id',
    tokenize = 'porter unicode61'
);

CREATE TRIGGER search_passages_insert AFTER INSERT ON search_passages BEGIN
    INSERT INTO search_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER search_passages_delete AFTER DELETE ON search_passages BEGIN
    INSERT INTO search_fts (search_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
