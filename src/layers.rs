//! The layer rules of `docs/architecture.md`, checked against the source: a unit test
//! reads every file under `src/` and refuses a path into a layer the file's own layer
//! may not reach. A violation names the file, the line and the rule.

/// A layer: where its files are, and the modules it may not reach (by their path from
/// the crate root: `crate::x` inside the library, `kiln::x` in the binary's `cli`).
struct Layer {
    name: &'static str,
    files: &'static [&'static str],
    forbidden: &'static [&'static str],
    /// When set, the only modules it may reach (everything else is forbidden).
    allowed_only: Option<&'static [&'static str]>,
    why: &'static str,
}

/// Every top-level module of the crate a layer could reach.
const MODULES: &[&str] = &[
    "api",
    "app",
    "client",
    "config",
    "db",
    "domain",
    "env_vars",
    "hooks",
    "http",
    "metrics",
    "policy",
    "service",
    "storage",
    "telemetry",
    "upstream",
];

const LAYERS: &[Layer] = &[
    Layer {
        name: "domain",
        files: &["src/domain/"],
        forbidden: &[],
        allowed_only: Some(&["domain"]),
        why: "domain holds pure types and imports nothing above it",
    },
    Layer {
        name: "metrics",
        files: &["src/metrics.rs"],
        forbidden: &[],
        allowed_only: Some(&["metrics"]),
        why: "metrics are counters every layer may bump; they import nothing of Kiln",
    },
    Layer {
        name: "api",
        files: &["src/api/"],
        forbidden: &[],
        allowed_only: Some(&["api", "domain"]),
        why: "the API contract depends only on domain",
    },
    Layer {
        name: "db/storage/policy/upstream",
        files: &[
            "src/db/",
            "src/storage.rs",
            "src/policy.rs",
            "src/upstream.rs",
        ],
        forbidden: &["app", "client", "hooks", "http", "service"],
        allowed_only: None,
        why: "db, storage, policy and upstream sit below service and http",
    },
    Layer {
        name: "service",
        files: &["src/service/"],
        forbidden: &["app", "client", "hooks", "http"],
        allowed_only: None,
        why: "service does not import http (nor the client side)",
    },
    Layer {
        name: "http",
        files: &["src/http/"],
        forbidden: &["client", "hooks"],
        allowed_only: None,
        why: "handlers do not use the client side",
    },
    Layer {
        name: "client/hooks",
        files: &["src/client.rs", "src/hooks/"],
        forbidden: &[],
        allowed_only: Some(&["api", "client", "domain", "hooks"]),
        why: "the client and the CI hooks reach the server only through the API contract",
    },
    Layer {
        name: "cli",
        // `kiln serve` is the server itself: it opens the database and storage.
        files: &["src/cli/"],
        forbidden: &[
            "app", "db", "http", "metrics", "service", "storage", "upstream",
        ],
        allowed_only: None,
        why: "the CLI reaches the server only through the API contract (src/cli/serve.rs, the server's own start, is exempt)",
    },
];

const EXEMPT: &[&str] = &["src/cli/serve.rs"];

/// Every `crate::x` or `kiln::x` path in `line`, by its first segment.
fn reached(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for root in ["crate::", "kiln::"] {
        let mut rest = line;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            let after = &rest[at + root.len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                found.push(&after[..end]);
            }
            rest = &after[end..];
        }
    }
    found
}

/// The violations in the files under `root` (the crate's directory).
fn violations(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for layer in LAYERS {
        for file in layer.files.iter().flat_map(|f| rust_files(&root.join(f))) {
            let relative = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            if EXEMPT.contains(&relative.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (number, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for module in reached(line) {
                    let refused = match layer.allowed_only {
                        Some(allowed) => MODULES.contains(&module) && !allowed.contains(&module),
                        None => layer.forbidden.contains(&module),
                    };
                    if refused {
                        out.push(format!(
                            "{relative}:{}: `{module}` from layer {}: {}",
                            number + 1,
                            layer.name,
                            layer.why
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Every `.rs` file at or below `path`.
pub(crate) fn rust_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_keeps_to_its_rules() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let found = violations(root);
        assert!(
            found.is_empty(),
            "{} layer violation(s):\n{}",
            found.len(),
            found.join("\n")
        );
    }

    #[test]
    fn a_violation_names_file_line_and_rule() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/domain")).unwrap();
        std::fs::write(
            dir.path().join("src/domain/bad.rs"),
            "// crate::db in a comment is fine\nuse crate::domain::X;\nfn f() { crate::db::redact(); }\n",
        )
        .unwrap();
        let found = violations(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("src/domain/bad.rs:3: `db` from layer domain"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn paths_are_read_by_their_first_segment() {
        assert_eq!(
            reached("use crate::api::{X}; kiln::http::y; my_crate::db"),
            vec!["api", "http"]
        );
    }
}
