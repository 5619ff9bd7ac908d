//! The command line's commands: each module runs one subcommand of [`crate::config::Command`]
//! (`main.rs` only parses, sets up logging and dispatches).
//!
//! # Layout
//! - [`serve`]: the server (the default command), until SIGTERM or Ctrl-C.
//! - [`version`]: the program's and the schemas' versions.
//! - [`migrate`]: apply the store's schema migrations and say which ran.
//! - [`keys`]: create, list or revoke API keys, in the store or, while a server holds a SQLite
//!   store, through that server's API.
//! - [`archive`]: archive, list and restore segments of old events.
//! - [`health`]: ask the local server's `/health/live` (for container health checks).
//! - [`outbox`]: set up the transactional outbox in an application's database.
//! - [`local_api`]: the small HTTP client that talks to the server at `HOST`:`PORT`.

pub mod archive;
pub mod health;
pub mod keys;
pub mod local_api;
pub mod migrate;
pub mod outbox;
pub mod serve;
pub mod version;
