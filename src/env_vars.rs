//! Every `KILN_*` environment variable: who reads (or sets) it and what it means. The
//! README's "Environment variables" table lists exactly these, and every `KILN_*` name in
//! `src/` and `tests/` is one of them (both checked by the tests below).

/// Who reads or sets a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `kiln serve` reads it.
    Server,
    /// Every client subcommand reads it.
    Client,
    /// `kiln ensure`, `kiln stage` and `kiln report` read it.
    Hook,
    /// `kiln stage` and `kiln ensure` set it for the stage command (or print it).
    Stage,
    /// The test suite reads it.
    Test,
}

impl Role {
    /// The README's wording.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Server => "kiln serve",
            Self::Client => "client commands",
            Self::Hook => "kiln ensure/stage/report",
            Self::Stage => "set for the stage command",
            Self::Test => "cargo test",
        }
    }
}

/// One variable.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// Its name.
    pub name: &'static str,
    /// Who reads or sets it.
    pub role: Role,
    /// What it means.
    pub meaning: &'static str,
}

const fn var(name: &'static str, role: Role, meaning: &'static str) -> EnvVar {
    EnvVar {
        name,
        role,
        meaning,
    }
}

/// The registry.
pub const VARIABLES: &[EnvVar] = &[
    var(
        "KILN_CONFIG",
        Role::Server,
        "a TOML config file (`--config`)",
    ),
    var(
        "KILN_DATA_DIR",
        Role::Server,
        "the data directory (`--data-dir`)",
    ),
    var(
        "KILN_LISTEN",
        Role::Server,
        "the listen address (`--listen`)",
    ),
    var(
        "KILN_DATABASE_URL",
        Role::Server,
        "the metadata database URL (`--database-url`)",
    ),
    var(
        "KILN_STORAGE",
        Role::Server,
        "the object store URL (`--storage`)",
    ),
    var(
        "KILN_PRESIGN_DOWNLOADS",
        Role::Server,
        "presigned download redirects (`--presign-downloads`)",
    ),
    var(
        "KILN_MAX_UPLOAD_SIZE",
        Role::Server,
        "the largest upload (`--max-upload-size`)",
    ),
    var(
        "KILN_ACCEL_REDIRECT",
        Role::Server,
        "downloads sent by nginx via `X-Accel-Redirect` (`--accel-redirect`)",
    ),
    var(
        "KILN_PAGE_CACHE_SIZE",
        Role::Server,
        "the most memory rendered pages may take (`--page-cache-size`)",
    ),
    var(
        "KILN_BUILD_LEASE_TIMEOUT",
        Role::Server,
        "how long a build lease lasts without a heartbeat (`--build-lease-timeout`)",
    ),
    var(
        "KILN_POLICIES",
        Role::Server,
        "a directory of promotion policies (`--policies`)",
    ),
    var(
        "KILN_UPSTREAM",
        Role::Server,
        "what `root/pypi` mirrors at first start (`--upstream`)",
    ),
    var(
        "KILN_UPSTREAM_TIMEOUT",
        Role::Server,
        "how long a mirror waits for its upstream (`--upstream-timeout`)",
    ),
    var(
        "KILN_METRICS_TOKEN",
        Role::Server,
        "the bearer token `GET /metrics` requires (`--metrics-token`)",
    ),
    var(
        "KILN_STORAGE_TIMEOUT",
        Role::Server,
        "how long an object-store request may take, retries included (`--storage-timeout`)",
    ),
    var(
        "KILN_WEBHOOK_ALLOW_HOSTS",
        Role::Server,
        "non-public hosts webhooks may be delivered to, comma-separated (`--webhook-allow-host`)",
    ),
    var(
        "KILN_WEBHOOK_RETRY",
        Role::Server,
        "the wait before a failed webhook delivery's first retry (`--webhook-retry`)",
    ),
    var(
        "KILN_TRASH_FOR",
        Role::Server,
        "how long a removed release or file stays restorable (`--trash-for`)",
    ),
    var(
        "KILN_GC_INTERVAL",
        Role::Server,
        "how often the server collects garbage, or `off` (`--gc-interval`)",
    ),
    var(
        "KILN_GC_GRACE",
        Role::Server,
        "how old an unnamed stored object must be before it is deleted (`--gc-grace`)",
    ),
    var(
        "KILN_WEBHOOK_ATTEMPTS",
        Role::Server,
        "how many times a webhook delivery is tried (`--webhook-attempts`)",
    ),
    var(
        "KILN_UPLOAD_IDLE_TIMEOUT",
        Role::Server,
        "cut off an upload that pauses this long (`--upload-idle-timeout`)",
    ),
    var(
        "KILN_UPLOAD_TIMEOUT",
        Role::Server,
        "the longest an upload body may take (`--upload-timeout`)",
    ),
    var(
        "KILN_MAX_FORM_FIELDS",
        Role::Server,
        "most fields of an upload form (`--max-form-fields`)",
    ),
    var(
        "KILN_MAX_ARCHIVE_ENTRIES",
        Role::Server,
        "most members of an uploaded archive (`--max-archive-entries`)",
    ),
    var(
        "KILN_MAX_METADATA_SIZE",
        Role::Server,
        "the largest wheel METADATA (`--max-metadata-size`)",
    ),
    var(
        "KILN_MAX_UNPACKED_SIZE",
        Role::Server,
        "the most an archive may unpack to (`--max-unpacked-size`)",
    ),
    var(
        "KILN_LOG_FORMAT",
        Role::Server,
        "`text` or `json` logs (`--log-format`)",
    ),
    var(
        "KILN_ADMIN_TOKEN",
        Role::Server,
        "fixes the admin token at the first start",
    ),
    var(
        "KILN_LOG",
        Role::Server,
        "log verbosity, e.g. `debug` (falls back to `RUST_LOG`)",
    ),
    var("KILN_SERVER", Role::Client, "the server's URL (`--server`)"),
    var("KILN_TOKEN", Role::Client, "the token to send (`--token`)"),
    var(
        "KILN_WEBHOOK_SECRET",
        Role::Client,
        "a webhook's signing secret (`kiln webhook add --secret`)",
    ),
    var(
        "KILN_MIRROR_PASSWORD",
        Role::Client,
        "a mirror's upstream password (`kiln index create/modify --mirror-password`)",
    ),
    var(
        "KILN_PROJECT_DIR",
        Role::Hook,
        "the project root (`--project-dir`)",
    ),
    var(
        "KILN_PROJECT",
        Role::Hook,
        "the project name (`--project`); set for the stage command too",
    ),
    var(
        "KILN_BRANCH",
        Role::Hook,
        "the git branch, when the CI provider's variables do not say (`--branch`)",
    ),
    var(
        "KILN_BUILD_NUMBER",
        Role::Hook,
        "the pipeline's build number (`--build-number`)",
    ),
    var(
        "KILN_RUN_ID",
        Role::Hook,
        "this job's run id for results (`--run-id`)",
    ),
    var(
        "KILN_REPORT_TIMEOUT",
        Role::Hook,
        "how long `kiln stage` and `kiln report` retry delivering a verdict (`--report-timeout`, default 5m)",
    ),
    var(
        "KILN_COMMIT",
        Role::Hook,
        "the commit being built (`--commit`; default: the CI's commit variable, else git's HEAD)",
    ),
    var(
        "KILN_BASE_VERSION",
        Role::Hook,
        "the human version part, e.g. `1.4` (`--base-version`)",
    ),
    var(
        "KILN_VERSION_SCHEME",
        Role::Hook,
        "how base version and build number combine (`--version-scheme`)",
    ),
    var(
        "KILN_MASTER_INDEX",
        Role::Hook,
        "the index main-branch builds go to (`--master-index`)",
    ),
    var(
        "KILN_MAIN_BRANCHES",
        Role::Hook,
        "comma-separated branches that build into the master index (`--main-branch`)",
    ),
    var(
        "KILN_BUILD_CMD",
        Role::Hook,
        "a shell command that builds the wheel into `$KILN_DIST_DIR` (`--build-cmd`)",
    ),
    var(
        "KILN_BUILD_TOOL",
        Role::Hook,
        "the build frontend, `build` or `uv` (`--build-tool`)",
    ),
    var(
        "KILN_PYTHON",
        Role::Hook,
        "the Python that builds and is reported (`--python`)",
    ),
    var(
        "KILN_RETRY_FAILED_BUILD",
        Role::Hook,
        "build again after a failed build (`--retry-failed-build`)",
    ),
    var(
        "KILN_WAIT_TIMEOUT",
        Role::Hook,
        "how long to wait for another runner's build (`--wait-timeout`)",
    ),
    var(
        "KILN_ARTIFACT",
        Role::Hook,
        "test a published release `PROJECT==VERSION` instead of building (`--artifact`)",
    ),
    var(
        "KILN_INDEX",
        Role::Hook,
        "the index `--artifact` and a checkout-less `kiln report` look on (`--index`)",
    ),
    var(
        "KILN_TARGET",
        Role::Hook,
        "the wheel tag this runner installs and builds for (`--target`); a per-target build's `--build-cmd` sees it too",
    ),
    var(
        "KILN_DIST_DIR",
        Role::Stage,
        "where a `--build-cmd` writes its wheels",
    ),
    var(
        "KILN_VERSION",
        Role::Stage,
        "the computed version (for a `--build-cmd` and the stage command)",
    ),
    var(
        "KILN_INDEX_URL",
        Role::Stage,
        "the branch index's simple URL",
    ),
    var("KILN_INDEX", Role::Stage, "the branch index's name"),
    var(
        "KILN_WHEEL_FILENAME",
        Role::Stage,
        "the tested wheel's filename",
    ),
    var("KILN_SHA256", Role::Stage, "the tested wheel's sha256"),
    var("KILN_WHEEL", Role::Stage, "the downloaded wheel's path"),
    var(
        "KILN_TEST_PYTHON",
        Role::Test,
        "the Python that creates the test venvs (default `python3`)",
    ),
    var(
        "KILN_TEST_PG_BIN",
        Role::Test,
        "where PostgreSQL's `initdb` and `pg_ctl` are",
    ),
    var(
        "KILN_TEST_REQUIRE_BACKENDS",
        Role::Test,
        "`1`: a missing PostgreSQL or moto fails `api_pg_s3` instead of skipping it (`.ci/run` sets it)",
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn names_in(text: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("KILN_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('_');
            if name.len() > "KILN_".len() {
                found.insert(name.to_owned());
            }
            rest = &tail[end..];
        }
        found
    }

    fn registry() -> BTreeSet<String> {
        VARIABLES.iter().map(|v| v.name.to_owned()).collect()
    }

    #[test]
    fn every_variable_the_code_names_is_registered_and_every_registered_one_is_used() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut used = BTreeSet::new();
        for file in crate::layers::rust_files(&root.join("src"))
            .into_iter()
            .chain(crate::layers::rust_files(&root.join("tests")))
        {
            if file.ends_with("env_vars.rs") {
                continue;
            }
            used.extend(names_in(&std::fs::read_to_string(&file).unwrap()));
        }
        let registry = registry();
        let unregistered: Vec<&String> = used.difference(&registry).collect();
        let unused: Vec<&String> = registry.difference(&used).collect();
        assert!(
            unregistered.is_empty() && unused.is_empty(),
            "not in src/env_vars.rs: {unregistered:?}; registered but never named in src/ or tests/: {unused:?}"
        );
    }

    #[test]
    fn the_readme_table_lists_exactly_the_registry() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Environment variables")
            .nth(1)
            .expect("README.md has an `## Environment variables` section");
        let table: String = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .collect::<Vec<_>>()
            .join("\n");
        let listed = names_in(&table);
        let registry = registry();
        assert_eq!(
            listed,
            registry,
            "the README's table should be:\n| variable | used by | meaning |\n| --- | --- | --- |\n{}",
            VARIABLES
                .iter()
                .map(|v| format!("| `{}` | {} | {} |", v.name, v.role.describe(), v.meaning))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
