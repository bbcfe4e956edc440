-- Grants by host (every state document reads a host's live grants) and by request (revoke):
-- the primary key (id, host) serves neither, so each poll scanned the whole table.
CREATE INDEX sgrant_host ON sgrant (host);
CREATE INDEX sgrant_request ON sgrant (request_id);
INSERT INTO schema_version (version) VALUES (4);
