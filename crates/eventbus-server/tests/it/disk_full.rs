//! The SQLite store's disk fills up (a small tmpfs): publishes get `507 store-full`, the server
//! stays up and serves what it stored, and once space is freed it goes on, with every
//! acknowledged event intact across a `kill -9`. Needs `mount` (root); skipped without it,
//! outside CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestServer;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("eventbus-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eventbus::testing::skip("cannot mount a tmpfs (the test needs root)");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "resizing the tmpfs");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_507_and_the_store_goes_on_after_space_is_freed() {
    let Some(disk) = Tmpfs::mount("3m") else {
        return;
    };
    let url = format!("sqlite://{}", disk.path().join("eventbus.db").display());
    let mut server = TestServer::start(&[("EVENT_STORE_URL", url.as_str())]).await;
    let filler = "x".repeat(20_000);
    let mut acked = Vec::new();
    let refused = loop {
        let reply = server
            .publish(&json!({"type": "doc.filled", "payload": filler}))
            .await;
        if reply.status != StatusCode::CREATED {
            break reply;
        }
        acked.push(reply.body["id"].as_str().unwrap().to_owned());
        assert!(acked.len() < 1_000, "a 3 MB disk took 20 MB of events");
    };
    assert_eq!(
        refused.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["type"], json!("/problems/store-full"));
    assert!(!acked.is_empty());
    // Still up, and serving what it stored.
    let live = server.get("/health/live", &[]).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(server.count().await, acked.len());

    disk.resize("64m");
    let after = server
        .publish(&json!({"type": "doc.filled", "payload": 1}))
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);
    acked.push(after.body["id"].as_str().unwrap().to_owned());
    server.restart().await;
    let ids: Vec<String> = server
        .all_events()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids, acked,
        "every acknowledged event, in order, after kill -9"
    );
}
