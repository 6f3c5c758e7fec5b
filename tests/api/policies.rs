//! Promotion policy files as the CLI and the server read them.

use std::process::Command;

use crate::helpers::{run, show};

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

#[tokio::test]
async fn policy_check_lists_rules_or_names_file_line_and_reason() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut good = kiln();
    good.args(["policy", "check"]).arg(&repo);
    let output = run(good).await;
    assert!(output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("master-to-prod (")
            && String::from_utf8_lossy(&output.stdout)
                .contains("root/master -> root/prod when unit green"),
        "{}",
        show(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prod.toml"),
        "[[promotion]]\nname = \"x\"\nfrom = \"root/master\"\nto = \"root/prod\"\nrequired-stages = [\"unit\"]\nauot = true\n",
    )
    .unwrap();
    let mut bad = kiln();
    bad.args(["policy", "check"]).arg(dir.path());
    let output = run(bad).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("prod.toml:6: unknown field `auot`"),
        "{stderr}"
    );

    // The server refuses to start on the same file, with the same words.
    let data = tempfile::tempdir().unwrap();
    let mut serve = kiln();
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .arg("--data-dir")
        .arg(data.path());
    let output = run(serve).await;
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("prod.toml:6: unknown field `auot`"),
        "{}",
        show(&output)
    );
}
