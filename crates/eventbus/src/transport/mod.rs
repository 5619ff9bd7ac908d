//! Transports: how committed events leave the bus.
//!
//! Layout: `internal` (in-process subscribers). Every transport reads the log by `seq` from a
//! cursor; the commit log only wakes them and carries hot events.

pub mod internal;
