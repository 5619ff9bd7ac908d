//! Support for the project's own test suites: how a test that cannot run here says so.
//!
//! A test that needs a service the machine lacks (PostgreSQL, the test S3 server, strace,
//! promtool) calls [`skip`] and returns. Outside CI that is a skip, never a pass in disguise: the
//! reason is printed and, because the test harness hides the output of tests that return
//! normally, also appended to the file named by `EVENTBUS_TEST_SKIP_LOG`, which `scripts/test`
//! lists and counts at the end of the run. In CI (`CI=true`) it fails the test instead.

use std::io::Write;

/// Skips the running test for `reason` (see the module documentation); panics in CI.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run, which CI does not allow: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
    if let Ok(path) = std::env::var("EVENTBUS_TEST_SKIP_LOG")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // One short write per line, so lines of parallel tests do not interleave.
        let _ = file.write_all(format!("{test}: {reason}\n").as_bytes());
    }
}
