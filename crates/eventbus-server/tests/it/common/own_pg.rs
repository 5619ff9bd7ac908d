//! A PostgreSQL server of a test's own ([`OwnPostgres`]), for the tests that need TLS with
//! client certificates or that restart the server: the shared test database serves every
//! other test at once and must stay up.

use std::process::Command;

/// A throwaway PostgreSQL server of a test's own, on a free loopback port, in a temporary
/// directory, for tests that restart it or need settings the shared one lacks. Either plain
/// ([`OwnPostgres::start_plain`]: trust on 127.0.0.1) or with TLS
/// ([`OwnPostgres::start_tls`]: a certificate for `localhost` and `127.0.0.1` signed by a
/// private CA, admitting only TLS sessions with a client certificate of that CA naming the user,
/// `hostssl … cert`). Stopped on drop, also when the test panics.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    /// Whether the server's programs run as `postgres` (the test runs as root, which
    /// PostgreSQL refuses to be).
    as_postgres: bool,
    /// The port it listens on.
    pub port: u16,
    tls: bool,
}

/// The directory of the highest PostgreSQL version's programs under `/usr/lib/postgresql`.
fn postgres_bin() -> Option<std::path::PathBuf> {
    let mut found: Vec<(Vec<u32>, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `program --version` (or `version`) runs.
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl OwnPostgres {
    /// The TLS server (see the type): certificates, cluster, started; `None` (after a skip)
    /// when the machine lacks PostgreSQL's programs, `openssl`, or (as root) the `postgres` user.
    pub fn start_tls() -> Option<OwnPostgres> {
        Self::start(true)
    }

    /// The plain server (trust on 127.0.0.1), started; `None` (after a skip) as for
    /// [`OwnPostgres::start_tls`].
    pub fn start_plain() -> Option<OwnPostgres> {
        Self::start(false)
    }

    fn start(tls: bool) -> Option<OwnPostgres> {
        let Some(bin) = postgres_bin() else {
            eventbus::testing::skip("no PostgreSQL programs under /usr/lib/postgresql/*/bin");
            return None;
        };
        if tls && !runs("openssl", "version") {
            eventbus::testing::skip("no openssl command to make the test certificates");
            return None;
        }
        // Under /tmp, where the `postgres` user can reach it when the test runs as root.
        let dir = tempfile::Builder::new()
            .prefix("eb-pg-tls-")
            .tempdir_in("/tmp")
            .expect("creating a temporary directory");
        // A new directory belongs to the effective user: root, or not.
        let as_postgres = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(dir.path()).expect("the temporary directory"),
        ) == 0;
        let mut owner = None;
        if as_postgres {
            let id = |flag: &str| {
                Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .and_then(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .trim()
                            .parse::<u32>()
                            .ok()
                    })
            };
            match (id("-u"), id("-g")) {
                (Some(uid), Some(gid)) if runs("runuser", "--version") => {
                    owner = Some((uid, gid));
                }
                _ => {
                    eventbus::testing::skip(
                        "running as root without a `postgres` user or runuser to run PostgreSQL",
                    );
                    return None;
                }
            }
        }
        let mut pg = OwnPostgres {
            dir,
            bin,
            as_postgres,
            port: 0,
            tls,
        };
        if tls {
            pg.make_certificates();
        }
        if let Some((uid, gid)) = owner {
            for entry in std::fs::read_dir(pg.dir.path()).unwrap() {
                std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
            }
            std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid)).unwrap();
        }
        pg.init_cluster();
        pg.start_server();
        Some(pg)
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> String {
        self.path("ca.crt").display().to_string()
    }

    pub fn client_cert(&self) -> String {
        self.path("client.crt").display().to_string()
    }

    pub fn client_key(&self) -> String {
        self.path("client.key").display().to_string()
    }

    /// A private CA; a server certificate for `localhost` and `127.0.0.1`; a client
    /// certificate for the user `postgres`. Keys are P-256 (quick to make), in PKCS#8.
    fn make_certificates(&self) {
        let openssl = |args: &[&str]| {
            run_ok(
                Command::new("openssl")
                    .args(args)
                    .current_dir(self.dir.path()),
            )
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &new_key,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=eventbus test private CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        for (name, subject, extensions) in [
            (
                "server",
                "/CN=localhost",
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
            ),
            ("client", "/CN=postgres", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (key, csr, crt, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            std::fs::write(
                self.path(&ext),
                format!(
                    "basicConstraints=critical,CA:FALSE\n\
                     keyUsage=critical,digitalSignature,keyEncipherment\n{extensions}"
                ),
            )
            .unwrap();
            openssl(
                &[
                    &["req", "-new"][..],
                    &new_key,
                    &["-keyout", &key, "-out", &csr, "-subj", subject],
                ]
                .concat(),
            );
            openssl(&[
                "x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "2",
                "-out", &crt, "-extfile", &ext,
            ]);
        }
        for key in ["ca.key", "server.key", "client.key"] {
            std::fs::set_permissions(
                self.path(key),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
        }
    }

    /// One of PostgreSQL's programs, as the user the server runs as, in the temporary directory.
    fn program(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        cmd.current_dir(self.dir.path()).env("LC_ALL", "C");
        cmd
    }

    /// `initdb` with the superuser `postgres`, then TLS with the private CA and `hostssl …
    /// cert` as the only way in.
    fn init_cluster(&self) {
        run_ok(self.program("initdb").args([
            "-D",
            "data",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]));
        let dir = self.dir.path().display();
        let tls = if self.tls {
            format!(
                "ssl = on\n\
                 ssl_cert_file = '{dir}/server.crt'\n\
                 ssl_key_file = '{dir}/server.key'\n\
                 ssl_ca_file = '{dir}/ca.crt'\n"
            )
        } else {
            String::new()
        };
        let conf = format!(
            "\n# eventbus test server\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{dir}'\n\
             {tls}\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n"
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("data/postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        let hba = if self.tls {
            "hostssl all all 127.0.0.1/32 cert\n"
        } else {
            "host all all 127.0.0.1/32 trust\n"
        };
        // Truncating keeps the file's owner.
        std::fs::write(self.path("data/pg_hba.conf"), hba).unwrap();
    }

    /// Restarts the server on its port (`pg_ctl restart -m fast`: sessions are closed, and the
    /// server is back once it accepts connections again).
    pub fn restart(&self) {
        run_ok(
            self.program("pg_ctl")
                .args([
                    "restart",
                    "-w",
                    "-t",
                    "30",
                    "-m",
                    "fast",
                    "-D",
                    "data",
                    "-l",
                    "server.log",
                ])
                .args(["-o", &format!("-p {}", self.port)]),
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (the plain server), sessions named `app`.
    pub fn plain_url(&self, app: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?application_name={app}",
            self.port
        )
    }

    /// Starts the server on a free loopback port (another one if that port is taken meanwhile).
    fn start_server(&mut self) {
        for _ in 0..3 {
            self.port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let out = self
                .program("pg_ctl")
                .args(["start", "-w", "-t", "30", "-D", "data", "-l", "server.log"])
                .args(["-o", &format!("-p {}", self.port)])
                .output()
                .expect("running pg_ctl start");
            if out.status.success() {
                return;
            }
            let log = self.server_log();
            if !log.contains("already in use") {
                panic!(
                    "pg_ctl start failed ({}): {}\n{}\nserver log:\n{log}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        panic!(
            "PostgreSQL found no free port; its log:\n{}",
            self.server_log()
        );
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// A URL for the bus to `localhost` with `sslmode=verify-full` and `extra` parameters.
    pub fn url(&self, app: &str, extra: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&application_name={app}{extra}",
            self.port
        )
    }

    /// `&sslrootcert=…`: the private CA.
    pub fn root_cert_param(&self) -> String {
        format!("&sslrootcert={}", self.ca())
    }

    /// `&sslcert=…&sslkey=…`: the client certificate.
    pub fn client_cert_params(&self) -> String {
        format!(
            "&sslcert={}&sslkey={}",
            self.client_cert(),
            self.client_key()
        )
    }

    /// `psql` as `postgres` over TLS with the client certificate (`-qAtX`, `|` between columns).
    pub fn psql(&self, sql: &str) -> String {
        let conninfo = format!(
            "host=localhost port={} sslmode=verify-full sslrootcert={} sslcert={} sslkey={} \
             dbname=postgres user=postgres",
            self.port,
            self.ca(),
            self.client_cert(),
            self.client_key()
        );
        run_ok(Command::new("psql").args([&conninfo, "-qAtX", "-c", sql]))
            .trim()
            .to_owned()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .program("pg_ctl")
            .args(["stop", "-D", "data", "-m", "immediate", "-w", "-t", "10"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
