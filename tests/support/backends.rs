//! The shared backends on loopback: a temporary PostgreSQL cluster and an S3-compatible
//! server (moto), started once per test process and stopped when it exits.
//!
//! - PostgreSQL: `initdb` + `pg_ctl` from `KILN_TEST_PG_BIN`, `PATH`, or Debian's
//!   `/usr/lib/postgresql/<version>/bin`, in a temp dir, on a free port. PostgreSQL refuses
//!   to run as root, so as root the cluster runs as the `postgres` (or `nobody`) user.
//! - S3: `moto_server` from `PATH`, or installed into `target/test-venv` when missing.
//! - Each process spawns a watchdog that stops both servers and removes their files once
//!   the process is gone, however it ends (a panic, `cargo test` interrupted, …).
//!
//! Each user (a test, a benchmark target) asks for a fresh database and bucket by name.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set (to anything but `0`) to make missing PostgreSQL/moto a failure instead of a skip.
pub const REQUIRE_VAR: &str = "KILN_TEST_REQUIRE_BACKENDS";

/// The S3 credentials moto accepts (it does not check them).
pub const S3_KEY_ID: &str = "kiln-test";
pub const S3_SECRET: &str = "kiln-test-secret";
pub const S3_REGION: &str = "us-east-1";

/// The running shared servers.
#[derive(Debug)]
pub struct Services {
    /// `postgres://kiln@127.0.0.1:PORT`, without a database name.
    pub postgres: String,
    /// `http://127.0.0.1:PORT` of the S3 server.
    pub s3_endpoint: String,
}

/// Where one server (or benchmark target) keeps its metadata and bytes.
#[derive(Debug, Clone)]
pub struct Backing {
    pub database_url: String,
    pub storage_url: String,
    /// `object_store` settings for the bucket (`--storage-option KEY=VALUE`).
    pub storage_settings: Vec<(String, String)>,
    /// The bucket's S3 endpoint.
    pub s3_endpoint: String,
    pub bucket: String,
}

impl Backing {
    /// `kiln serve` flags that select this backing.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--database-url".to_owned(),
            self.database_url.clone(),
            "--storage".to_owned(),
            self.storage_url.clone(),
        ];
        for (key, value) in &self.storage_settings {
            args.push("--storage-option".to_owned());
            args.push(format!("{key}={value}"));
        }
        args
    }

    /// The keys of the objects in the bucket (moto answers unsigned list requests; the
    /// tests store far fewer than one page of 1000).
    pub async fn object_keys(&self) -> Vec<String> {
        let listing = reqwest::get(format!(
            "{}/{}?list-type=2&max-keys=1000",
            self.s3_endpoint, self.bucket
        ))
        .await
        .expect("listing the test bucket")
        .text()
        .await
        .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// Counts the blobs in the bucket (not the start-up probe object).
    pub async fn object_count(&self) -> usize {
        self.object_keys()
            .await
            .iter()
            .filter(|key| key.contains("/blobs/"))
            .count()
    }
}

/// The shared servers, started on first use; `Err` says what is missing.
pub fn services() -> Result<&'static Services, String> {
    static SERVICES: OnceLock<Result<Services, String>> = OnceLock::new();
    SERVICES
        .get_or_init(|| {
            let pg = start_postgres()?;
            let s3 = start_s3()?;
            Ok(Services {
                postgres: pg,
                s3_endpoint: s3,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The shared servers, or — when they cannot run here — a message on stderr and the end
/// of this process with success (a skip), unless [`REQUIRE_VAR`] makes it a failure.
pub fn services_or_skip(suite: &str) -> &'static Services {
    static SAID: std::sync::Once = std::sync::Once::new();
    match services() {
        Ok(services) => services,
        Err(missing) => {
            let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
            let message = format!(
                "\n{suite}: cannot start the PostgreSQL + S3 backends: {missing}\n\
                 {suite}: {}\n",
                if required {
                    format!("{REQUIRE_VAR} is set, so this is a failure")
                } else {
                    format!("SKIPPED (set {REQUIRE_VAR}=1 to make this a failure, as CI does)")
                }
            );
            // Written past the test harness's output capture, so it is always shown, and
            // once however many tests ask at the same moment.
            SAID.call_once(|| {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
            });
            if required {
                std::process::exit(101);
            }
            std::process::exit(0);
        }
    }
}

/// A fresh (or, for the same `name`, the same) database and bucket.
pub async fn backing(services: &Services, name: &str) -> Backing {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", services.postgres))
        .await
        .expect("connecting to the test PostgreSQL");
    match sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
    {
        Ok(_) => {}
        // 42P04: duplicate_database — a restart of the same server.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        Err(e) => panic!("creating test database {name}: {e}"),
    }
    let _ = admin.close().await;
    let bucket = name.replace('_', "-");
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", services.s3_endpoint))
        .send()
        .await
        .expect("creating the test bucket");
    assert!(
        response.status().is_success() || response.status() == 409,
        "creating bucket {bucket}: {}",
        response.status()
    );
    Backing {
        database_url: format!("{}/{name}", services.postgres),
        storage_url: format!("s3://{bucket}/kiln"),
        storage_settings: vec![
            ("aws_endpoint".into(), services.s3_endpoint.clone()),
            ("aws_allow_http".into(), "true".into()),
            ("aws_access_key_id".into(), S3_KEY_ID.into()),
            ("aws_secret_access_key".into(), S3_SECRET.into()),
            ("aws_region".into(), S3_REGION.into()),
        ],
        s3_endpoint: services.s3_endpoint.clone(),
        bucket,
    }
}

/// A database/bucket name derived from a path, stable across restarts of one data dir.
pub fn name_for(path: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
    format!("k{}", hex::encode(&digest[..8]))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not listen on 127.0.0.1:{port} within 60 s; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    })
}

/// The directory holding `initdb` and `pg_ctl`.
fn postgres_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("KILN_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            return Err(format!(
                "PostgreSQL is missing: KILN_TEST_PG_BIN=`{}` holds no initdb",
                dir.display()
            ));
        }
        return Ok(dir);
    }
    if let (Some(initdb), Some(_)) = (on_path("initdb"), on_path("pg_ctl")) {
        return Ok(initdb.parent().unwrap().to_path_buf());
    }
    // Debian keeps the server binaries off PATH.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL is missing: no initdb/pg_ctl in KILN_TEST_PG_BIN, on PATH, or in \
         /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
            .to_owned()
    })
}

/// The unprivileged account to run PostgreSQL as when this process is root.
fn unprivileged_user() -> Result<Option<(String, u32)>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map_or(1, |m| m.uid());
    if uid != 0 {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        let output = Command::new("id").args(["-u", user]).output();
        if let Ok(output) = output
            && output.status.success()
            && let Ok(id) = String::from_utf8_lossy(&output.stdout).trim().parse()
        {
            return Ok(Some((user.to_owned(), id)));
        }
    }
    Err(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run \
         PostgreSQL as (it refuses root)"
            .to_owned(),
    )
}

/// A command, run as `user` when one is given (through `runuser`).
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn start_postgres() -> Result<String, String> {
    let bin = postgres_bin()?;
    let user = unprivileged_user()?;
    let dir = tempfile::Builder::new()
        .prefix("kiln-test-pg-")
        .tempdir()
        .map_err(|e| format!("creating a temp dir for PostgreSQL: {e}"))?
        .keep();
    if let Some((_, uid)) = &user {
        std::os::unix::fs::chown(&dir, Some(*uid), None)
            .map_err(|e| format!("handing {} to the PostgreSQL user: {e}", dir.display()))?;
    }
    let user_name = user.as_ref().map(|(name, _)| name.as_str());
    let data = dir.join("data");
    let log = dir.join("log");
    let output = as_user(user_name, &bin.join("initdb"))
        .args(["-A", "trust", "-U", "kiln", "-E", "UTF8", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| format!("running {}: {e}", bin.join("initdb").display()))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let port = free_port();
    // Durability is not under test here, speed is welcome; many test servers each keep a
    // small pool open.
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=400",
        dir.display()
    );
    let status = as_user(user_name, &bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(&log)
        .args(["-w", "start"])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running pg_ctl: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pg_ctl start failed; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    wait_for_port(port, "PostgreSQL", &log)?;
    // The watchdog: once this process is gone, stop the cluster and delete its files.
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; '{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    spawn_watchdog(user_name, &script)?;
    Ok(format!("postgres://kiln@127.0.0.1:{port}"))
}

fn spawn_watchdog(user: Option<&str>, script: &str) -> Result<(), String> {
    as_user(user, Path::new("/bin/sh"))
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the test servers' watchdog: {e}"))
}

/// `moto_server` from PATH, or from the test venv (installed there when missing).
fn moto_server() -> Result<PathBuf, String> {
    if let Some(path) = on_path("moto_server") {
        return Ok(path);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join("s3-venv");
    let moto = venv.join("bin/moto_server");
    if moto.is_file() {
        return Ok(moto);
    }
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let lock = std::fs::File::create(target.join("s3-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if moto.is_file() {
        return Ok(moto);
    }
    let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let steps: [(&str, Command); 2] = [
        ("creating target/s3-venv", {
            let mut c = Command::new(&python);
            c.args(["-m", "venv", "--clear"]).arg(&venv);
            c
        }),
        (
            "installing moto[server] into target/s3-venv (PyPI must be reachable)",
            {
                let mut c = Command::new(venv.join("bin/python"));
                c.args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "moto[server]==5.2.1",
                ]);
                c
            },
        ),
    ];
    for (what, mut command) in steps {
        let output = command
            .output()
            .map_err(|e| format!("moto_server is missing; {what}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "moto_server is missing; {what} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(moto)
}

fn start_s3() -> Result<String, String> {
    let moto = moto_server()?;
    let port = free_port();
    let log = std::env::temp_dir().join(format!("kiln-test-moto-{port}.log"));
    let script = format!(
        "'{moto}' -H 127.0.0.1 -p {port} >'{log}' 2>&1 & m=$!; \
         while [ -d /proc/{pid} ] && kill -0 $m 2>/dev/null; do sleep 1; done; kill $m; rm -f '{log}'",
        moto = moto.display(),
        log = log.display(),
        pid = std::process::id(),
    );
    spawn_watchdog(None, &script)?;
    wait_for_port(port, "moto_server", &log)?;
    Ok(format!("http://127.0.0.1:{port}"))
}
