"""The sharded SQLite command store: the source of truth for every command and event."""
