-- Ticket binding: when the ticket of a live grant was last seen open.
ALTER TABLE request ADD COLUMN ticket_verified_at BIGINT;
INSERT INTO schema_version (version) VALUES (2);
