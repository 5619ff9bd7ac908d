//! HAProxy from Debian's package, run with the repository's `deploy/haproxy.cfg` (the file
//! `compose.cluster.yaml` uses), its addresses given by the environment.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The HAProxy binary, if this machine has one.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A free loopback port (bound, then released for the caller to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running HAProxy; killed when dropped.
pub struct LoadBalancer {
    child: Child,
    port: u16,
}

impl LoadBalancer {
    /// Starts HAProxy on a free loopback port in front of `nodes` (`host:port`, three), and
    /// waits until it routes a request to a ready node.
    pub async fn start(binary: &std::path::Path, nodes: &[String; 3]) -> LoadBalancer {
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy.cfg");
        let port = free_port();
        let child = Command::new(binary)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .env("EVENTBUS_LB_BIND", format!("127.0.0.1:{port}"))
            .env("EVENTBUS_NODE1", &nodes[0])
            .env("EVENTBUS_NODE2", &nodes[1])
            .env("EVENTBUS_NODE3", &nodes[2])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting haproxy");
        let lb = LoadBalancer { child, port };
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{}/health/ready", lb.url()))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return lb;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy on port {port} did not route to a ready node within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
