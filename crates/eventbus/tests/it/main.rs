//! Integration tests of the library: the store contract (every backend) and the bus.

mod common;
mod consumer;
mod store;
mod subscriber;
mod webhook;
