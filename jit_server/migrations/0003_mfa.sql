-- Fleet TOTP. Secrets are stored sealed (jit_proto::mfa_seal) to the data directory's
-- mfa.key, never in clear; each host receives them sealed to its own X25519 key.
CREATE TABLE mfa_secret (
    person TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    sealed TEXT NOT NULL,
    confirmed_at BIGINT NOT NULL
);
-- An enrolment waiting for its first correct code (never delivered to a host).
CREATE TABLE mfa_pending (
    person TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
-- The highest TOTP step any host accepted for a person (relayed to the person's other hosts).
CREATE TABLE mfa_used (
    person TEXT PRIMARY KEY,
    step BIGINT NOT NULL,
    host TEXT NOT NULL,
    at BIGINT NOT NULL
);
-- The host's X25519 public key (base64) that fleet secrets are sealed to.
ALTER TABLE host ADD COLUMN seal_key TEXT;
-- A person's live grants, read at each relayed step.
CREATE INDEX request_requester ON request (requester);
INSERT INTO schema_version (version) VALUES (3);
