//! The pure core: events, patterns, filters, the catalogue, the middleware chain, the pattern
//! index and the in-memory commit log. Nothing here does IO; stores, transports and HTTP depend
//! on it, never the other way round.

pub mod catalogue;
pub mod cloudevent;
pub mod event;
pub mod filter;
pub mod log;
pub mod middleware;
pub mod pattern;
pub mod payload;
pub mod principal;
pub mod router;
pub mod time;
