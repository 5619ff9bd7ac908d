-- Plugins: what is installed (to tell installs from updates and uninstalls across restarts),
-- each plugin's key-value store, and the events a plugin failed on after its retries.
CREATE TABLE plugin_states (
    name       text    COLLATE "C" PRIMARY KEY,
    kind       text    NOT NULL,              -- `js` or `rust`
    version    text    NOT NULL,
    hash       text    NOT NULL,              -- sha256 of plugin.json and index.js (js), the version (rust)
    suspended  boolean NOT NULL DEFAULT false,
    updated_at bigint  NOT NULL               -- microseconds since the epoch
);

CREATE TABLE plugin_kv (
    plugin     text   COLLATE "C" NOT NULL,
    key        text   COLLATE "C" NOT NULL,
    value      text   NOT NULL,               -- JSON
    updated_at bigint NOT NULL,
    PRIMARY KEY (plugin, key)
);

CREATE TABLE plugin_dead_letters (
    id         bigserial PRIMARY KEY,
    plugin     text      COLLATE "C" NOT NULL,
    event_id   text      NOT NULL,
    event_seq  bigint    NOT NULL,
    event_type text      NOT NULL,
    error      text      NOT NULL,
    attempts   integer   NOT NULL,
    created_at bigint    NOT NULL
);
CREATE INDEX plugin_dead_letters_plugin ON plugin_dead_letters (plugin, id);
