//! `TestServer` (the real binary on port 0) and a small typed client.
