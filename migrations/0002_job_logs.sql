-- Log lines of jobs run by workers elsewhere (Slurm, Kubernetes, a plain
-- VM): appended through the service by the worker, read by any replica.
-- Only adds a table (replicas of the previous version keep working).
CREATE TABLE IF NOT EXISTS job_logs (
    job_id text COLLATE "C" NOT NULL,
    at bigint NOT NULL,          -- the chunk's offset in the job's log
    chunk bytea NOT NULL,
    PRIMARY KEY (job_id, at)
);
