-- What each grant row weighs in its host's signed document (jit_proto::state_doc::grant_weight:
-- its JSON, a separator, its person's sealed secret if it asks for a code). An approval admits
-- a grant to a host only while the host's live rows stay within what one document carries.
ALTER TABLE sgrant ADD COLUMN weight BIGINT NOT NULL DEFAULT 0;
-- Rows written before: an upper bound (a character is at most 4 bytes, a secret 384).
UPDATE sgrant SET weight = 4 * LENGTH(doc) + 385;
INSERT INTO schema_version (version) VALUES (5);
