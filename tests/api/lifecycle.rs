//! Start, stop, restart: the `kiln` binary itself, first-start bootstrap, SIGTERM, and data
//! surviving restarts. Also the `kiln index` CLI against a running server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{ADMIN_TOKEN, Dist, TestApp};

#[tokio::test]
async fn restart_keeps_indexes_files_and_tokens() {
    let app = TestApp::spawn().await;
    app.create_index("acme/feature-x", &["root/master"]).await;
    let dist = Dist::wheel("demo", "1.0");
    assert_eq!(app.upload("acme/feature-x", &dist).await.status(), 200);
    let app = app.restart().await;
    let names: Vec<String> = app
        .client()
        .list_indexes()
        .await
        .unwrap()
        .iter()
        .map(|v| v.index.name.to_string())
        .collect();
    assert_eq!(names, ["acme/feature-x", "root/master", "root/prod"]);
    let file = app
        .get(
            &format!("acme/feature-x/+f/{}/{}", dist.sha256(), dist.filename),
            &[],
        )
        .await;
    assert_eq!(file.bytes().await.unwrap(), dist.bytes);
    // The admin token still works and bootstrap did not run twice.
    assert_eq!(
        app.upload("acme/feature-x", &Dist::wheel("demo", "1.1"))
            .await
            .status(),
        200
    );
}

fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    for var in [
        "KILN_ADMIN_TOKEN",
        "KILN_TOKEN",
        "KILN_SERVER",
        "KILN_CONFIG",
        "KILN_DATA_DIR",
        "KILN_LISTEN",
        "KILN_DATABASE_URL",
        "KILN_STORAGE",
    ] {
        command.env_remove(var);
    }
    command
}

struct Served {
    child: Child,
    base: String,
}

impl Served {
    /// Starts `kiln serve` on `data_dir` (and, in the `api_pg_s3` suite, its database and
    /// bucket).
    async fn start(data_dir: &std::path::Path, admin_token: Option<&str>) -> Self {
        let port = crate::helpers::free_port();
        let mut command = kiln();
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(crate::helpers::serve_args(data_dir).await)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = admin_token {
            command.env("KILN_ADMIN_TOKEN", token);
        }
        let mut child = command.spawn().expect("spawning kiln serve");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = crate::helpers::Deadline::after(60);
        while !deadline.passed() {
            if probe::blocking_get_ok(&format!("{base}/+health")) {
                return Self { child, base };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        panic!(
            "kiln serve did not become healthy on {base}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Sends SIGTERM and returns (exit success, stdout, stderr).
    fn terminate(self) -> (bool, String, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let output = self.child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

mod probe {
    /// A dependency-free health probe (blocking, for use before the runtime matters).
    pub fn blocking_get_ok(url: &str) -> bool {
        use std::io::{Read, Write};
        let Some(rest) = url.strip_prefix("http://") else {
            return false;
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut stream) = std::net::TcpStream::connect(host) else {
            return false;
        };
        let _ = write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }
}

#[tokio::test]
async fn binary_bootstraps_once_prints_instructions_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let served = Served::start(data.path(), None).await;
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert!(ok, "kiln serve must exit 0 on SIGTERM; stderr:\n{stderr}");
    assert!(stdout.contains("Kiln initialized"), "{stdout}");
    let token = std::fs::read_to_string(data.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("kiln_"), "{token}");
    assert!(
        stdout.contains(&token),
        "the generated token is shown once: {stdout}"
    );
    assert!(
        stdout.contains("pip install --index-url http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("uv pip install --index-url"), "{stdout}");
    assert!(stdout.contains("twine upload --repository-url"), "{stdout}");
    assert!(!stderr.contains(&token), "the token must never be logged");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.path().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A second start reuses everything and prints no new token.
    let served = Served::start(data.path(), None).await;
    let base = served.base.clone();
    let status = reqwest::Client::new()
        .post(format!("{base}/+api/v1/indexes"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "acme/x", "bases": ["root/master"]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201, "the first start's token still works");
    let (ok, stdout, _) = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert!(ok);
    assert!(!stdout.contains("Kiln initialized"), "{stdout}");
}

#[tokio::test]
async fn kiln_admin_token_fixes_the_first_token_and_the_cli_manages_indexes() {
    let data = tempfile::tempdir().unwrap();
    let served = Served::start(data.path(), Some(ADMIN_TOKEN)).await;
    let base = served.base.clone();
    assert!(
        !data.path().join("admin-token").exists(),
        "a fixed token is not written out"
    );
    let cli = move |args: &[&str], token: Option<&str>| {
        let mut command = kiln();
        command.arg("index").args(args).env("KILN_SERVER", &base);
        if let Some(token) = token {
            command.env("KILN_TOKEN", token);
        }
        command.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || {
        vec![
            cli(
                &["create", "acme/feature-x", "--bases", "root/master"],
                Some(ADMIN_TOKEN),
            ),
            cli(&["list"], None),
            cli(&["show", "acme/feature-x"], None),
            cli(
                &["modify", "acme/feature-x", "--volatile", "true"],
                Some(ADMIN_TOKEN),
            ),
            cli(&["delete", "root/master"], Some(ADMIN_TOKEN)),
            cli(&["create", "acme/feature-y"], None),
            cli(&["delete", "acme/feature-x"], Some(ADMIN_TOKEN)),
            cli(&["show", "acme/feature-x"], None),
        ]
    })
    .await
    .unwrap();
    let text = |i: usize| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out[i].stdout),
            String::from_utf8_lossy(&out[i].stderr)
        )
    };
    assert!(out[0].status.success(), "{}", text(0));
    assert!(text(0).contains("created index acme/feature-x"));
    assert!(
        text(1).contains("acme/feature-x") && text(1).contains("root/prod"),
        "{}",
        text(1)
    );
    assert!(
        text(2).contains("bases:          root/master"),
        "{}",
        text(2)
    );
    assert!(text(2).contains("/acme/feature-x/+simple/"), "{}", text(2));
    assert!(text(3).contains("volatile:       true"), "{}", text(3));
    assert_eq!(out[4].status.code(), Some(2));
    assert!(
        text(4).contains("is a base of `acme/feature-x`"),
        "{}",
        text(4)
    );
    assert_eq!(out[5].status.code(), Some(2));
    assert!(text(5).contains("this needs a token"), "{}", text(5));
    assert!(out[6].status.success(), "{}", text(6));
    assert_eq!(out[7].status.code(), Some(2));
    assert!(
        text(7).contains("index `acme/feature-x` does not exist (HTTP 404)"),
        "{}",
        text(7)
    );
    let (ok, _, _) = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert!(ok);
}

#[test]
fn cli_without_a_server_says_what_to_check() {
    let output = kiln()
        .args([
            "index",
            "list",
            "--server",
            &format!("http://127.0.0.1:{}", crate::helpers::free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach Kiln at") && stderr.contains("KILN_SERVER"),
        "{stderr}"
    );
}

#[tokio::test]
async fn config_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let file_port = crate::helpers::free_port();
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\ndata_dir = \"{}\"\nmax_upload_size = \"1KiB\"\n",
            dir.path().join("from-file").display()
        ),
    )
    .unwrap();
    let mut child = kiln()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(crate::helpers::serve_args(&data).await)
        .env("KILN_DATA_DIR", &data)
        .env("KILN_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{file_port}");
    let deadline = crate::helpers::Deadline::after(60);
    let healthy = loop {
        if probe::blocking_get_ok(&format!("{base}/+health")) {
            break true;
        }
        if deadline.passed() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(healthy, "the listen address comes from the config file");
    assert!(
        data.join("tmp").exists(),
        "KILN_DATA_DIR overrides the file's data_dir"
    );
    assert!(!dir.path().join("from-file").exists());
    let big = Dist::raw("demo", "1.0", "demo-1.0.tar.gz", vec![0x1f; 4096]);
    let response = reqwest::Client::new()
        .post(format!("{base}/root/master/"))
        .bearer_auth(ADMIN_TOKEN)
        .multipart(big.form())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        413,
        "max_upload_size comes from the config file"
    );
    let _ = child.kill();
    let _ = child.wait();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listne = \"x\"\n").unwrap();
    let output = kiln()
        .arg("serve")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("unknown field `listne`"),
        "{stderr}"
    );
}

/// clap checks a command's definition only when it is parsed, so a clash (say, a
/// positional `version` against `--version`) would panic in front of a user. Every
/// subcommand's `--help` is parsed here.
#[tokio::test]
async fn every_subcommand_parses() {
    let subcommands: &[&[&str]] = &[
        &["serve"],
        &["index", "list"],
        &["index", "create"],
        &["mirror", "ls"],
        &["mirror", "refresh"],
        &["mirror", "purge"],
        &["ensure"],
        &["stage"],
        &["report"],
        &["status"],
        &["promote"],
        &["promotions", "list"],
        &["yank"],
        &["unyank"],
        &["events"],
        &["policy", "check"],
    ];
    for args in subcommands {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
        command.args(*args).arg("--help");
        let output = crate::helpers::run(command).await;
        assert!(
            output.status.success(),
            "kiln {} --help:\n{}",
            args.join(" "),
            crate::helpers::show(&output)
        );
    }
}
