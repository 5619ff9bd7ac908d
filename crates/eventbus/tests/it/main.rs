//! Integration tests of the library: the store contract (every backend) and the bus.

mod common;
mod store;
mod subscriber;
