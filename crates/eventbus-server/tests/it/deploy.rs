//! What can be checked of the container image and the deployment files without a Docker engine:
//! the Dockerfile's paths and build command exist, the binary starts with exactly the environment
//! the image sets (only `PORT` is made ephemeral and `/data` points at a temporary directory), its
//! health check command passes, and `.env.example` lists every setting the binary knows.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_eventbus");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The instructions of the Dockerfile, continuation lines joined.
fn dockerfile() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(l) = line.strip_suffix('\\') {
            current.push_str(l);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// `KEY=value` pairs of the ENV instructions of the last stage.
fn image_env() -> BTreeMap<String, String> {
    let lines = dockerfile();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let mut env = BTreeMap::new();
    for l in &lines[last_from..] {
        if let Some(rest) = l.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    env
}

#[test]
fn dockerfile_paths_and_build_command_exist() {
    let lines = dockerfile();
    let mut copied = 0;
    for l in &lines {
        let Some(rest) = l.strip_prefix("COPY ") else {
            continue;
        };
        if rest.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = rest.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "COPY source {src} does not exist"
            );
            copied += 1;
        }
    }
    assert!(copied >= 3, "the build stage copies the workspace");
    let build = lines
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("--locked")
            && build.contains("-p eventbus-server")
            && build.contains("--bin eventbus")
    );
    let manifest =
        std::fs::read_to_string(repo().join("crates/eventbus-server/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("name = \"eventbus\""),
        "the server crate builds the `eventbus` binary"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "runs as a non-root user"
    );
    assert!(lines.iter().any(|l| l == "EXPOSE 3002"));
    let health = lines
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a health check");
    assert!(health.contains("/usr/local/bin/eventbus") && health.contains("\"health\""));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=build") && l.ends_with("/usr/local/bin/eventbus"))
    );
    let env = image_env();
    assert_eq!(env.get("HOST").map(String::as_str), Some("0.0.0.0"));
    assert_eq!(env.get("PORT").map(String::as_str), Some("3002"));
}

#[test]
fn the_binary_starts_with_the_image_environment_and_passes_its_health_check() {
    let data = tempfile::tempdir().unwrap();
    let mut env = image_env();
    for v in env.values_mut() {
        *v = v.replace("/data", &data.path().display().to_string());
    }
    env.insert("PORT".into(), "0".into());
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .envs(&env)
        .current_dir(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("eventbus listening on http://") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server starts");
    let port = addr.rsplit(':').next().unwrap().to_owned();
    assert!(
        addr.starts_with("0.0.0.0:"),
        "HOST=0.0.0.0 is honoured: {addr}"
    );
    assert!(
        data.path().join("eventbus.db").exists(),
        "the store is created under the data volume"
    );
    let status = Command::new(BIN)
        .arg("health")
        .env_clear()
        .envs(&env)
        .env("PORT", &port)
        .status()
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        status.success(),
        "`eventbus health` passes against the running server"
    );
    let down = Command::new(BIN)
        .arg("health")
        .env_clear()
        .envs(&env)
        .env("PORT", &port)
        .output()
        .unwrap();
    assert!(
        !down.status.success(),
        "`eventbus health` fails when nothing answers"
    );
}

#[test]
fn env_example_lists_every_setting_and_nothing_else() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let known: std::collections::BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|s| s.split(['=', ']']).next().unwrap().to_owned())
        .collect();
    let example = std::fs::read_to_string(repo().join(".env.example")).unwrap();
    let listed: std::collections::BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().trim().to_owned())
        .filter(|k| k != "RUST_LOG")
        .collect();
    assert_eq!(listed, known, ".env.example and `eventbus --help` disagree");
}

/// `compose.cluster.yaml` runs the HAProxy configuration the cluster test runs
/// (`tests/cluster`), with every address that configuration reads set, each node address naming
/// a node service of the file, and the settings every node must share set once for all nodes.
#[test]
fn the_cluster_compose_file_gives_haproxy_every_node() {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap();
    let (config, compose) = (read("deploy/haproxy.cfg"), read("compose.cluster.yaml"));
    let vars: std::collections::BTreeSet<&str> = config
        .match_indices("\"${")
        .map(|(i, _)| {
            let rest = &config[i + 3..];
            &rest[..rest.find('}').expect("a closing brace")]
        })
        .collect();
    assert!(vars.contains(&"EVENTBUS_LB_BIND"), "{vars:?}");
    let nodes = vars
        .iter()
        .filter(|v| v.starts_with("EVENTBUS_NODE"))
        .count();
    assert_eq!(nodes, 3, "{vars:?}");
    for var in &vars {
        let line = compose
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var}:")))
            .unwrap_or_else(|| panic!("compose.cluster.yaml does not set {var}"));
        if var.starts_with("EVENTBUS_NODE") {
            let host = line.split(':').nth(1).unwrap().trim();
            assert!(
                compose.contains(&format!("\n  {host}: *node\n")),
                "{var} names {host}, which is not a node service"
            );
        }
    }
    assert!(compose.contains("./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg"));
    for shared in [
        "EVENT_STORE_URL",
        "EVENT_BUS_ADMIN_KEY",
        "EVENT_BUS_TOKEN_SECRET",
    ] {
        assert_eq!(
            compose.matches(&format!("\n    {shared}: ")).count(),
            1,
            "{shared} is set once, in the node template"
        );
    }
}

/// Through `deploy/haproxy.cfg`, SSE messages arrived 100 ms and more late (p50 118 ms against
/// 4 ms direct, `eventbus-bench cluster`): HAProxy held the streams' small writes for fuller
/// packets. The configuration must keep `option http-no-delay` for every proxy (in `defaults`).
#[test]
fn sse_through_haproxy_waited_for_fuller_packets() {
    let config = std::fs::read_to_string(repo().join("deploy/haproxy.cfg")).unwrap();
    let defaults: Vec<&str> = config
        .lines()
        .skip_while(|l| !l.starts_with("defaults"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .map(str::trim)
        .collect();
    assert!(
        defaults.contains(&"option http-no-delay"),
        "the defaults section lacks `option http-no-delay`: {defaults:?}"
    );
}
