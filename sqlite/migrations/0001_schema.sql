-- The store's schema. The database keeps the promises: instagram_message_id
-- is unique by constraint, mirror states are checked, and status_counts
-- follows every insert and state change by trigger, inside the same
-- transaction as the statement that caused it.

CREATE TABLE messages (
	id                     INTEGER PRIMARY KEY,
	instagram_message_id   TEXT UNIQUE,
	sender_id              TEXT NOT NULL,
	recipient_id           TEXT NOT NULL,
	direction              TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
	message_text           TEXT NOT NULL DEFAULT '',
	timestamp              DATETIME NOT NULL,
	created_at             DATETIME NOT NULL,
	mirror_status          TEXT NOT NULL CHECK (mirror_status IN ('pending', 'mirrored', 'dropped', 'failed', 'disabled')),
	user_id                TEXT NOT NULL,
	attachments            TEXT NOT NULL DEFAULT '',
	reply_to_mid           TEXT NOT NULL DEFAULT '',
	standby                BOOLEAN NOT NULL DEFAULT 0,
	deleted                BOOLEAN NOT NULL DEFAULT 0,
	deleted_at             DATETIME,
	original_text          TEXT,
	edit_count             INTEGER NOT NULL DEFAULT 0,
	mirror_attempts        INTEGER NOT NULL DEFAULT 0,
	mirror_last_error      TEXT NOT NULL DEFAULT '',
	mirror_last_attempt_at DATETIME,
	mirrored_at            DATETIME,
	mirror_degraded        BOOLEAN NOT NULL DEFAULT 0,
	mirror_owner           TEXT NOT NULL DEFAULT ''
);

CREATE INDEX idx_messages_timestamp ON messages (timestamp);
-- A customer's messages, newest first, without reading anyone else's.
CREATE INDEX idx_messages_user ON messages (user_id, id);
-- Each mirror state in id order: the reconciler's oldest-first pages.
CREATE INDEX idx_messages_mirror ON messages (mirror_status, id);

-- How many messages are in each state, so that stats need not count ten
-- million rows.
CREATE TABLE status_counts (
	status TEXT PRIMARY KEY,
	n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO status_counts (status, n) VALUES ('pending', 0), ('mirrored', 0), ('dropped', 0), ('failed', 0), ('disabled', 0);

CREATE TRIGGER messages_counted AFTER INSERT ON messages
BEGIN
	UPDATE status_counts SET n = n + 1 WHERE status = NEW.mirror_status;
END;

CREATE TRIGGER messages_status_moved AFTER UPDATE OF mirror_status ON messages
WHEN OLD.mirror_status IS NOT NEW.mirror_status
BEGIN
	UPDATE status_counts SET n = n - 1 WHERE status = OLD.mirror_status;
	UPDATE status_counts SET n = n + 1 WHERE status = NEW.mirror_status;
END;

-- One row per running instance (process): the lease under which it may
-- mirror the messages whose mirror_owner is its owner token.
CREATE TABLE mirror_leases (
	owner       TEXT PRIMARY KEY,
	instance_id TEXT NOT NULL,
	expires_at  INTEGER NOT NULL -- unix milliseconds
);

-- The delivery journal: every delivery answered 200, byte for byte.
CREATE TABLE deliveries (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	received_at DATETIME NOT NULL,
	signature   TEXT NOT NULL DEFAULT '',
	body        BLOB NOT NULL,
	stored      INTEGER NOT NULL DEFAULT 0,
	duplicates  INTEGER NOT NULL DEFAULT 0,
	unsent      INTEGER NOT NULL DEFAULT 0,
	edited      INTEGER NOT NULL DEFAULT 0,
	items       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_deliveries_received ON deliveries (received_at);

-- One row that readiness writes to, proving the file takes writes.
CREATE TABLE health_checks (
	id         INTEGER PRIMARY KEY,
	checked_at DATETIME NOT NULL
);
