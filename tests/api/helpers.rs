//! Test support: a real server on a free loopback port, synthetic distributions, and the
//! real Python clients (pip, uv, twine) installed into a venv under `target/`.
//!
//! The same suite compiles twice: as `api` on the embedded default (SQLite + a local
//! directory) and as `api_pg_s3` on PostgreSQL + an S3 bucket ([`shared_backends`]), each
//! server with its own database and bucket on one shared PostgreSQL and moto per process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kiln::config::ServeConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "../support/dist.rs"]
mod dist;
pub use dist::{Dist, TarMember, form_of, tar_gz};
#[path = "../support/backends.rs"]
pub mod backends;
#[path = "../support/upstream.rs"]
pub mod upstream;
pub use backends::Backing;

/// The provenance a test claim carries: `commit` and a recognisable CI run.
pub fn provenance(commit: &str) -> kiln::domain::Provenance {
    kiln::domain::Provenance {
        ci: Some("test".into()),
        run_id: Some("run-1".into()),
        run_url: Some("https://ci.example/run/1".into()),
        attempt: Some(1),
        runner: Some("runner-1".into()),
        python: Some("CPython 3.12.0".into()),
        platform: Some("linux-x86_64".into()),
        ..kiln::domain::Provenance::of_commit(commit.parse().unwrap())
    }
}

/// True in the `api_pg_s3` build of the suite: servers use PostgreSQL and S3.
pub fn shared_backends() -> bool {
    env!("CARGO_CRATE_NAME") == "api_pg_s3"
}

/// The database and bucket of the server whose data directory is `data_dir` (the same
/// for a restart on the same directory); `None` on the embedded default.
pub async fn backing_for(data_dir: &Path) -> Option<Backing> {
    if !shared_backends() {
        return None;
    }
    let services = backends::services_or_skip(env!("CARGO_CRATE_NAME"));
    Some(backends::backing(services, &backends::name_for(data_dir)).await)
}

/// Extra `kiln serve` flags for a server on `data_dir` (none on the embedded default).
pub async fn serve_args(data_dir: &Path) -> Vec<String> {
    backing_for(data_dir)
        .await
        .map(|backing| backing.args())
        .unwrap_or_default()
}

/// The admin token every test server is bootstrapped with.
pub const ADMIN_TOKEN: &str = "kiln_test-admin-token-0123456789abcdef";

/// A running Kiln server with its own data directory.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The data directory (kept until the app is dropped).
    pub data_dir: tempfile::TempDir,
    /// The PostgreSQL database and bucket, in the `api_pg_s3` suite.
    pub backing: Option<Backing>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestApp {
    /// Starts a server on a fresh data directory.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server on a fresh data directory, adjusting its configuration first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let data_dir = tempfile::tempdir().expect("creating a temp data dir");
        Self::start(data_dir, adjust).await
    }

    async fn start(data_dir: tempfile::TempDir, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut config = ServeConfig::for_data_dir(data_dir.path());
        let backing = backing_for(data_dir.path()).await;
        if let Some(backing) = &backing {
            config.database_url.clone_from(&backing.database_url);
            config.storage_url.clone_from(&backing.storage_url);
            config
                .storage_options
                .settings
                .clone_from(&backing.storage_settings);
        }
        config.admin_token = Some(ADMIN_TOKEN.to_owned());
        // Nothing in the tests reaches the internet; mirror tests start their own upstream.
        config.upstream = None;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a free port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = kiln::Server::open(config)
            .await
            .expect("opening the server");
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(async move {
            server
                .run(listener, async {
                    let _ = rx.await;
                })
                .await
                .expect("server run");
        });
        Self {
            base,
            data_dir,
            backing,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A handle on a server running elsewhere (a `kiln serve` process the test started),
    /// so every helper here works against it too.
    #[allow(
        dead_code,
        reason = "only the api_pg_s3 suite runs servers as processes"
    )]
    pub fn attach(base: String, data_dir: tempfile::TempDir, backing: Option<Backing>) -> Self {
        Self {
            base,
            data_dir,
            backing,
            shutdown: None,
            handle: None,
        }
    }

    /// Stops the server gracefully and starts a new one on the same data directory.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// [`TestApp::restart`] with the configuration adjusted as at the first start.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        self.stop().await;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::start(data_dir, adjust).await
    }

    /// Stops the server, waiting for in-flight requests.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// The simple index URL of an index.
    pub fn simple(&self, index: &str) -> String {
        self.url(&format!("{index}/+simple/"))
    }

    /// A typed API client with the admin token.
    pub fn client(&self) -> kiln::client::Client {
        kiln::client::Client::new(&self.base, Some(ADMIN_TOKEN.to_owned())).unwrap()
    }

    /// Creates `name` with `bases` through the API.
    pub async fn create_index(&self, name: &str, bases: &[&str]) {
        let settings = kiln::domain::IndexSettings {
            kind: kiln::domain::IndexKind::Stage,
            bases: bases.iter().map(|b| b.parse().unwrap()).collect(),
            volatile: false,
            promotion_only: false,
            ..kiln::domain::IndexSettings::default()
        };
        self.client()
            .create_index(&name.parse().unwrap(), &settings)
            .await
            .unwrap_or_else(|e| panic!("creating index {name}: {e}"));
    }

    /// Uploads a distribution the way twine does, with the admin token.
    pub async fn upload(&self, index: &str, dist: &Dist) -> reqwest::Response {
        self.upload_form(index, dist.form(), Some(ADMIN_TOKEN))
            .await
    }

    /// Publishes `dists` (one release) on `index` the way `kiln ensure` does: claims the
    /// build lease from `commit`, uploads each file under it and completes it, so the
    /// files carry provenance. Answers the first file's sha256.
    pub async fn build(&self, index: &str, commit: &str, dists: &[&Dist]) -> String {
        self.build_with(&self.client(), index, commit, dists).await
    }

    /// [`TestApp::build`] as the holder of `client`'s token.
    pub async fn build_with(
        &self,
        client: &kiln::client::Client,
        index: &str,
        commit: &str,
        dists: &[&Dist],
    ) -> String {
        let index: kiln::domain::IndexName = index.parse().unwrap();
        let (project, version) = (&dists[0].name, &dists[0].version);
        let claim = kiln::api::ClaimBuild {
            builder: "test runner".into(),
            retry: false,
            provenance: provenance(commit),
            target: None,
        };
        let claimed = client
            .claim_build(&index, project, version, &claim)
            .await
            .unwrap_or_else(|e| panic!("claiming {project} {version} on {index}: {e}"));
        let kiln::api::BuildStateView::Claimed { lease_id, .. } = claimed.status else {
            panic!("expected to claim {project} {version} on {index}: {claimed:?}")
        };
        let dir = tempfile::tempdir().unwrap();
        for dist in dists {
            let path = dist.write_to(dir.path());
            client
                .upload_file(&index, &path, project, version, Some(&lease_id))
                .await
                .unwrap_or_else(|e| panic!("uploading {} under the lease: {e}", dist.filename));
        }
        let body = kiln::api::LeaseBody {
            lease_id,
            error_tail: None,
            target: None,
        };
        client
            .lease_action(&index, project, version, "complete", &body)
            .await
            .unwrap_or_else(|e| panic!("completing {project} {version}: {e}"));
        dists[0].sha256()
    }

    /// Posts an arbitrary upload form.
    pub async fn upload_form(
        &self,
        index: &str,
        form: reqwest::multipart::Form,
        token: Option<&str>,
    ) -> reqwest::Response {
        let request = reqwest::Client::new()
            .post(self.url(&format!("{index}/")))
            .multipart(form);
        let request = match token {
            Some(token) => request.basic_auth("__token__", Some(token)),
            None => request,
        };
        request.send().await.expect("upload request")
    }

    /// A project's PEP 691 JSON page (asserting it exists).
    pub async fn json_page(&self, index: &str, project: &str) -> serde_json::Value {
        let response = self
            .get(
                &format!("{index}/+simple/{project}/"),
                &[("Accept", "application/vnd.pypi.simple.v1+json")],
            )
            .await;
        assert_eq!(response.status(), 200, "{index} {project}");
        assert_eq!(
            response.headers()["content-type"],
            "application/vnd.pypi.simple.v1+json"
        );
        response.json().await.unwrap()
    }

    /// GET with optional headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = no_redirect_client().get(self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("GET request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A port nothing listens on at this moment, on loopback (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process stopped when the test ends, whether it passed or panicked.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Set (to anything but `0`) when CI requires every backend and tool (`.ci/run` does).
pub fn required() -> bool {
    std::env::var("KILN_TEST_REQUIRE_BACKENDS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A reqwest client that shows redirects instead of following them.
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Reads a problem document's `detail`.
pub async fn detail(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The real Python clients, installed once per checkout into `target/test-venv`.
pub struct PythonTools {
    bin: PathBuf,
}

/// Versions installed into the test venv (PyPI is one of the reachable registries).
const PYTHON_REQUIREMENTS: &[&str] = &[
    "pip==26.3",
    "twine==7.0.0",
    "uv==0.13.9",
    "build==1.6.1",
    "tox==4.67.15",
    // build backends for `--no-isolation` builds of the sample projects, so tests do not
    // download a backend for every build
    "flit_core==4.2.0",
    "setuptools==84.2.1",
    "setuptools-scm==10.3.4",
];

/// The test venv, created on first use (under a file lock, so parallel test binaries wait
/// for one another instead of racing).
pub fn python() -> &'static PythonTools {
    static TOOLS: OnceLock<PythonTools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&target).unwrap();
        let venv = target.join("test-venv");
        let lock = std::fs::File::create(target.join("test-venv.lock")).unwrap();
        lock.lock().expect("locking target/test-venv.lock");
        let marker = venv.join(format!(".kiln-ready-{}", PYTHON_REQUIREMENTS.join("_")));
        if !marker.exists() {
            let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
            run_checked(Command::new(&python).args(["-m", "venv", "--clear"]).arg(&venv), "creating target/test-venv (is python3 with the venv module installed?)");
            run_checked(
                Command::new(venv.join("bin/python"))
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .args(PYTHON_REQUIREMENTS),
                "installing pip, twine, uv and build into target/test-venv (PyPI must be reachable)",
            );
            std::fs::write(&marker, b"").unwrap();
        }
        PythonTools { bin: venv.join("bin") }
    })
}

fn run_checked(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PythonTools {
    /// A command for a tool in the venv, isolated from the user's configuration.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin.join(tool));
        for var in [
            "PIP_FIND_LINKS",
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "UV_INDEX_URL",
            "UV_EXTRA_INDEX_URL",
            "UV_INDEX",
            "UV_DEFAULT_INDEX",
            "TWINE_USERNAME",
            "TWINE_PASSWORD",
            "TWINE_REPOSITORY_URL",
        ] {
            command.env_remove(var);
        }
        command
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("UV_NO_CONFIG", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        command
    }

    /// The venv's python.
    pub fn python_path(&self) -> PathBuf {
        self.bin.join("python")
    }
}

/// Runs a command to completion off the async runtime's threads.
pub async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("spawning a client command"))
        .await
        .unwrap()
}

/// `kiln ARGS…` (the built binary) against the server at `base` with `token`, with no
/// server settings from the environment.
pub async fn kiln_cli(base: &str, token: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env("KILN_SERVER", base)
        .env("KILN_TOKEN", token)
        .env_remove("KILN_DATA_DIR")
        .env_remove("KILN_DATABASE_URL")
        .env_remove("KILN_STORAGE");
    run(command).await
}

/// Formats a command's output for assertion messages.
pub fn show(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A generous deadline for a wait on a condition: a loaded 2-core CI machine can be many
/// times slower than a quiet one, and a wait that ends early fails for no reason.
pub struct Deadline(std::time::Instant);

impl Deadline {
    /// `secs` from now.
    #[must_use]
    pub fn after(secs: u64) -> Self {
        Self(std::time::Instant::now() + std::time::Duration::from_secs(secs))
    }

    /// True once the deadline has passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        std::time::Instant::now() >= self.0
    }
}
