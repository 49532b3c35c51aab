"""The PostgreSQL store's schema, as numbered migrations: each runs once per database, in order
(postgres.py applies them at connect under an advisory lock)."""

from __future__ import annotations

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS stream_items (
        stream   TEXT   NOT NULL,
        group_id TEXT   NOT NULL,
        id       TEXT   NOT NULL,
        data     JSONB  NOT NULL,
        seq      BIGINT NOT NULL,
        position BIGINT NOT NULL,
        created  BIGSERIAL,
        PRIMARY KEY (stream, group_id, id)
    );
    CREATE INDEX IF NOT EXISTS stream_items_order ON stream_items (stream, group_id, position);
    CREATE INDEX IF NOT EXISTS stream_items_recent ON stream_items (stream, created DESC);
    CREATE TABLE IF NOT EXISTS stream_groups (
        stream   TEXT   NOT NULL,
        group_id TEXT   NOT NULL,
        seq      BIGINT NOT NULL,
        PRIMARY KEY (stream, group_id)
    );
    CREATE TABLE IF NOT EXISTS state (
        scope TEXT  NOT NULL,
        key   TEXT  NOT NULL,
        value JSONB NOT NULL,
        PRIMARY KEY (scope, key)
    );
    """,
    # Tombstones: a deleted item keeps its row (no data) with the delete's seq, so a write that was
    # on its way before the delete is refused by the seq guard instead of inserting it again.
    2: """
    ALTER TABLE stream_items ADD COLUMN IF NOT EXISTS deleted_at DOUBLE PRECISION;
    CREATE INDEX IF NOT EXISTS stream_items_tombstones ON stream_items (deleted_at) WHERE deleted_at IS NOT NULL;
    """,
    # Appended text: one row per append beside its item, joined on when read, so an append writes
    # only its own text. A put or delete not newer than the item's last append is skipped by the
    # BEFORE trigger (its query sees appends committed while the write waited for the item's row
    # lock, which an append holds); one that is newer drops the appends.
    3: """
    CREATE TABLE IF NOT EXISTS stream_chunks (
        stream   TEXT   NOT NULL,
        group_id TEXT   NOT NULL,
        id       TEXT   NOT NULL,
        seq      BIGINT NOT NULL,
        start    BIGINT NOT NULL,
        field    TEXT   NOT NULL,
        text     TEXT   NOT NULL,
        PRIMARY KEY (stream, group_id, id, seq)
    );
    CREATE OR REPLACE FUNCTION stream_items_behind_chunks() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.seq <= (SELECT max(seq) FROM stream_chunks c
                       WHERE c.stream = OLD.stream AND c.group_id = OLD.group_id AND c.id = OLD.id) THEN
            RETURN NULL;
        END IF;
        RETURN NEW;
    END $$;
    DROP TRIGGER IF EXISTS stream_items_behind_chunks ON stream_items;
    CREATE TRIGGER stream_items_behind_chunks BEFORE UPDATE OF seq ON stream_items
        FOR EACH ROW EXECUTE FUNCTION stream_items_behind_chunks();
    CREATE OR REPLACE FUNCTION stream_chunks_superseded() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM stream_chunks c WHERE c.stream = OLD.stream AND c.group_id = OLD.group_id AND c.id = OLD.id;
        RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS stream_chunks_superseded ON stream_items;
    CREATE TRIGGER stream_chunks_superseded AFTER UPDATE OF seq OR DELETE ON stream_items
        FOR EACH ROW EXECUTE FUNCTION stream_chunks_superseded();
    """,
}
