-- Fencing: every claim that changes a job's owner increments its epoch; the owner's writes for the
-- job carry (owner, epoch) and are refused once another process took the job over.
ALTER TABLE jobs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
