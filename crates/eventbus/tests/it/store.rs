//! The store contract, run against every backend.
