//! Integration tests of the library: the store contract (every backend) and the bus;
//! `regression` holds one test per fixed bug, named after it.

mod archive;
mod common;
mod consumer;
mod plugin;
mod regression;
mod store;
mod subscriber;
mod webhook;
