-- The PostgreSQL index (src/index/postgres.rs): one table per kind of
-- metadata. Keys are compared bytewise (COLLATE "C"), as the embedded
-- index orders them. Records are stored as the bytes the service encoded
-- (bytea, not jsonb: equal bytes mean an equal record).
--
-- Never edit a migration once released (its checksum is kept in the
-- database): add the next file, list it in src/index/postgres/connect.rs,
-- and only add (tables, columns with defaults, indexes), so that replicas
-- of the previous version still run on the migrated schema.

CREATE TABLE components (
    component text COLLATE "C" NOT NULL,
    tag       text COLLATE "C" NOT NULL,
    arch      text COLLATE "C" NOT NULL,
    blake3    text NOT NULL,
    doc       bytea NOT NULL,
    PRIMARY KEY (component, tag, arch)
);
CREATE INDEX components_blake3 ON components (blake3);

CREATE TABLE inputs (
    inputs    text COLLATE "C" NOT NULL,
    component text COLLATE "C" NOT NULL,
    tag       text COLLATE "C" NOT NULL,
    arch      text COLLATE "C" NOT NULL,
    PRIMARY KEY (inputs, component, tag, arch)
);

CREATE TABLE derived (
    source text COLLATE "C" NOT NULL,
    kind   text COLLATE "C" NOT NULL,
    blob   text NOT NULL,
    PRIMARY KEY (source, kind)
);
CREATE INDEX derived_blob ON derived (blob);

CREATE TABLE downloads (
    component text COLLATE "C" NOT NULL,
    tag       text COLLATE "C" NOT NULL,
    arch      text COLLATE "C" NOT NULL,
    at        bigint NOT NULL,
    PRIMARY KEY (component, tag, arch)
);

CREATE TABLE blob_uses (
    blob text COLLATE "C" PRIMARY KEY,
    at   bigint NOT NULL
);

-- branch is '' for an image without one
CREATE TABLE images (
    component text COLLATE "C" NOT NULL,
    branch    text COLLATE "C" NOT NULL DEFAULT '',
    arch      text COLLATE "C" NOT NULL,
    doc       bytea NOT NULL,
    PRIMARY KEY (component, branch, arch)
);

-- state, replica, pinned, flight and attempts repeat the job document's
-- fields for queries; lease_until is set while a replica runs the job
CREATE TABLE jobs (
    id          text COLLATE "C" PRIMARY KEY,
    state       text NOT NULL,
    replica     text,
    pinned      text,
    flight      text,
    lease_until timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    created     timestamptz NOT NULL DEFAULT now(),
    doc         bytea NOT NULL
);
CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_running ON jobs (replica) WHERE state = 'running';

-- the job in flight for each single-flight key
CREATE TABLE flights (
    key    text PRIMARY KEY,
    job_id text NOT NULL
);

CREATE TABLE leases (
    name   text PRIMARY KEY,
    holder text NOT NULL,
    until  timestamptz NOT NULL
);

CREATE TABLE meta (
    key   text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
