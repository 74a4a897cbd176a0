-- Job ownership: the process running a job holds a lease on it and renews it; an unfinished job
-- whose lease has run out (its process died) may be claimed by another process.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TIMESTAMPTZ;

-- Why a stage attempt ended the way it did.
ALTER TABLE stage_attempts ADD COLUMN error TEXT;
