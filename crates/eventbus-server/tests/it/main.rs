//! Integration tests of the server: the real `eventbus` binary on an ephemeral port, over HTTP.

mod common;
