-- jit-server schema, version 1. Portable SQL: the same text runs on SQLite and PostgreSQL
-- (BIGINT for integers and booleans, TEXT for the rest, no auto-increment).

CREATE TABLE schema_version (version BIGINT NOT NULL);

-- People (names are lower-case account names; `admin` may list hosts and revoke anything).
CREATE TABLE person (
    name TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    ssh_keys TEXT NOT NULL,
    admin BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE person_group (
    person TEXT NOT NULL,
    grp TEXT NOT NULL,
    PRIMARY KEY (person, grp)
);
-- API tokens, SHA-256 of the token only.
CREATE TABLE token (
    hash TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE role (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE entitlement (idx BIGINT PRIMARY KEY, spec TEXT NOT NULL);

CREATE TABLE host (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    pubkey TEXT,
    enrolled_at BIGINT,
    seq BIGINT NOT NULL DEFAULT 0,
    acked_seq BIGINT NOT NULL DEFAULT 0,
    acked_at BIGINT,
    last_poll BIGINT
);
-- One-time join tokens (hash only), bound to the host record they enrol.
CREATE TABLE join_token (
    hash TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_key TEXT
);
-- Every sequence number ever issued to a host: allocated in the transaction that changes the
-- host's set, never twice.
CREATE TABLE host_seq (
    host TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    why TEXT NOT NULL,
    UNIQUE (host, seq)
);

-- Requests are immutable once filed except for state/decided_at/lock; `hash` binds reviews.
CREATE TABLE request (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    role TEXT NOT NULL,
    role_spec TEXT NOT NULL,
    hosts TEXT NOT NULL,
    duration BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ticket TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    pending_until BIGINT NOT NULL,
    hash TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    not_before BIGINT,
    not_after BIGINT,
    lock BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE review (
    request_id TEXT NOT NULL,
    person_key TEXT NOT NULL,
    person TEXT NOT NULL,
    verdict TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (request_id, person_key)
);
-- One row per (grant, host).
CREATE TABLE sgrant (
    id TEXT NOT NULL,
    host TEXT NOT NULL,
    request_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (id, host)
);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

INSERT INTO schema_version (version) VALUES (1);
