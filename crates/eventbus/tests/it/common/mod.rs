//! Helpers shared by the library integration tests.
