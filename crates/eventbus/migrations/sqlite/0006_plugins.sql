-- Plugins: what is installed (to tell installs from updates and uninstalls across restarts),
-- each plugin's key-value store, and the events a plugin failed on after its retries.
CREATE TABLE plugin_states (
    name       TEXT    PRIMARY KEY,
    kind       TEXT    NOT NULL,              -- `js` or `rust`
    version    TEXT    NOT NULL,
    hash       TEXT    NOT NULL,              -- sha256 of plugin.json and index.js (js), the version (rust)
    suspended  INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL               -- microseconds since the epoch
) WITHOUT ROWID;

CREATE TABLE plugin_kv (
    plugin     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,              -- JSON
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;

CREATE TABLE plugin_dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin     TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    event_seq  INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX plugin_dead_letters_plugin ON plugin_dead_letters (plugin, id);
