//! Integration tests of the library: the store contract (every backend) and the bus.

mod archive;
mod common;
mod consumer;
mod plugin;
mod store;
mod subscriber;
mod webhook;
