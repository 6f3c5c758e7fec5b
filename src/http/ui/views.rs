//! Template contexts: the overview service's answers shaped for the pages, and the
//! filters the templates use.

use std::time::Duration;

use serde_json::{Value, json};

use super::badge::Tone;
use crate::db::EventRecord;
use crate::domain::{EventKind, ProjectName};
use crate::service::builds::BuildStatus;
use crate::service::overview::{
    Home, IndexCard, IndexPage, ProjectPage, ReleasePage, Verdict, VerdictState,
};

pub use crate::api::human_bytes;

/// `850 ms`, `12.4 s`, `3 min 5 s` for milliseconds.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", Duration::from_millis(ms).as_secs_f64()),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// An RFC 3339 time as `2026-12-03 10:24:28 UTC`; anything else as it is.
pub fn when(at: Option<String>) -> String {
    let Some(at) = at else {
        return "—".to_owned();
    };
    chrono::DateTime::parse_from_rfc3339(&at).map_or(at, |t| {
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()
    })
}

fn card(card: &IndexCard) -> Value {
    let s = &card.index.settings;
    json!({
        "name": card.index.name.to_string(),
        "kind": if s.promotion_only { "production".to_owned() } else if s.branch.is_some() { "branch".to_owned() } else { s.kind.as_str().to_owned() },
        "bases": s.bases.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "branch": s.branch,
        "private": s.private,
        "promotion_only": s.promotion_only,
        "volatile": s.volatile,
        "description": s.description,
        "files": card.stats.files,
        "bytes": card.stats.bytes,
        "last_upload": card.stats.last_upload,
    })
}

/// The one-line description and colour of an event.
pub fn event(e: &EventRecord) -> Value {
    let tone = match e.kind {
        EventKind::Promotion => "promoted",
        EventKind::Refusal => "refused",
        EventKind::Yank | EventKind::BuildFailed | EventKind::Removed => "fail",
        _ => "muted",
    };
    json!({
        "id": e.id,
        "kind": e.kind.as_str(),
        "tone": tone,
        "index": e.index.as_ref().map(ToString::to_string),
        "project": e.project.as_ref().map(ToString::to_string),
        "version": e.version,
        "actor": e.actor,
        "at": e.at,
        "summary": event_summary(e),
    })
}

/// What an event's detail says, in a line.
pub fn event_summary(e: &EventRecord) -> String {
    let d = &e.detail;
    let text = |key: &str| d.get(key).and_then(Value::as_str).map(ToOwned::to_owned);
    match e.kind {
        EventKind::Promotion => text("target")
            .map(|t| format!("to {t}"))
            .or_else(|| text("policy").map(|p| format!("policy {p}")))
            .unwrap_or_default(),
        EventKind::Refusal => d
            .get("checks")
            .and_then(Value::as_array)
            .map(|checks| {
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| c.get("passed").and_then(Value::as_bool) == Some(false))
                    .filter_map(|c| c.get("rule").and_then(Value::as_str).map(ToOwned::to_owned))
                    .collect();
                format!("failed: {}", failed.join("; "))
            })
            .unwrap_or_default(),
        EventKind::Yank => text("reason").unwrap_or_default(),
        EventKind::Removed | EventKind::Restored | EventKind::Released => {
            let files = d.get("files").and_then(Value::as_array).map_or(0, Vec::len);
            let entry = d.get("trash").and_then(Value::as_i64).unwrap_or_default();
            let what = match e.kind {
                EventKind::Removed => "into",
                EventKind::Restored => "from",
                _ => "for good:",
            };
            format!(
                "{files} file(s) {what} trash entry {entry}: {}",
                text("reason").unwrap_or_default()
            )
        }
        EventKind::BuildFailed => {
            let last = text("error_tail")
                .and_then(|t| {
                    t.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| super::ansi::plain(l).chars().take(200).collect::<String>())
                })
                .unwrap_or_default();
            match text("builder") {
                Some(builder) => format!("by {builder}: {last}"),
                None => last,
            }
        }
        _ => String::new(),
    }
}

/// The home (or namespace) page.
pub fn home(heading: &str, home: &Home, namespace: Option<&str>) -> Value {
    let indexes: Vec<Value> = home
        .indexes
        .iter()
        .filter(|c| namespace.is_none_or(|ns| c.index.name.namespace() == ns))
        .map(card)
        .collect();
    let queue: Vec<Value> = home
        .queue
        .iter()
        .filter(|q| namespace.is_none_or(|ns| q.index.namespace() == ns))
        .map(|q| {
            let b = &q.build.build;
            json!({
                "index": q.index.to_string(),
                "project": q.build.project.to_string(),
                "version": q.build.version,
                "target": b.target.as_ref().map(ToString::to_string),
                "builder": b.builder,
                "attempt": b.attempt,
                "since": b.created_at,
                "commit": b.source_commit.as_ref().map(ToString::to_string),
                "expires_in_s": q.expires_in_ms.div_euclid(1000),
            })
        })
        .collect();
    json!({
        "heading": heading,
        "indexes": indexes,
        "queue": queue,
        "events": home.events.iter().map(event).collect::<Vec<_>>(),
    })
}

fn verdict_fields(verdict: &Verdict) -> (&'static str, String) {
    (verdict.state().as_str(), verdict.summary())
}

/// An index's page.
pub fn index_page(page: &IndexPage) -> Value {
    let projects: Vec<Value> = page
        .projects
        .iter()
        .map(|p| {
            let (state, summary) = verdict_fields(&p.verdict);
            json!({
                "name": p.project.to_string(),
                "newest": p.newest,
                "versions": p.versions,
                "yanked": p.yanked,
                "state": state,
                "summary": summary,
            })
        })
        .collect();
    json!({
        "index": card(&page.card),
        "inherits": page.inherits.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "projects": projects,
        "after": page.after,
        "next": page.next,
    })
}

/// A project's page.
pub fn project_page(page: &ProjectPage) -> Value {
    let versions: Vec<Value> = page
        .versions
        .iter()
        .map(|v| {
            let (state, summary) = verdict_fields(&v.verdict);
            json!({
                "version": v.version,
                "index": v.index.to_string(),
                "own": v.own,
                "files": v.files.len(),
                "yanked": !v.files.is_empty() && v.files.iter().all(|f| f.yanked),
                "state": state,
                "summary": summary,
                "promoted_to": v.promoted_to,
            })
        })
        .collect();
    json!({
        "index": page.index.name.to_string(),
        "project": page.project.to_string(),
        "versions": versions,
    })
}

/// The build's fields for the release page.
fn build(status: &BuildStatus) -> Value {
    let now = crate::service::builds::now_ms();
    match status {
        BuildStatus::Absent => json!({ "state": "absent" }),
        BuildStatus::Ready { .. } => json!({ "state": "ready" }),
        BuildStatus::Claimed {
            attempt,
            expires_at_ms,
            ..
        } => json!({
            "state": "building", "attempt": attempt,
            "expires_in_s": (expires_at_ms - now).div_euclid(1000),
        }),
        BuildStatus::Building {
            builder,
            expires_at_ms,
            attempt,
            ..
        } => json!({
            "state": "building", "builder": builder, "attempt": attempt,
            "expires_in_s": (expires_at_ms - now).div_euclid(1000),
        }),
        BuildStatus::Failed {
            builder,
            error_tail,
            attempt,
            ..
        } => json!({
            "state": "failed", "builder": builder, "attempt": attempt, "error_tail": error_tail,
        }),
    }
}

/// Quotes `text` for a POSIX shell if it needs it.
fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=+@%".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The commands that fetch exactly these bytes and check them.
fn reproduce(page: &ReleasePage, origin: &str) -> String {
    let index = &page.index;
    let pin = shell_quote(&format!(
        "{}=={}",
        page.release.project, page.release.version
    ));
    let mut lines = vec![
        "python -m venv .venv && . .venv/bin/activate".to_owned(),
        format!("pip install --index-url {origin}/{index}/+simple/ {pin}"),
        String::new(),
        "# or fetch the very files and check their sha256:".to_owned(),
        format!("pip download --no-deps --index-url {origin}/{index}/+simple/ {pin}"),
    ];
    for (_, file) in &page.files {
        lines.push(format!(
            "echo '{}  {}' | sha256sum -c",
            file.sha256, file.filename
        ));
    }
    if let Some(commit) = page
        .files
        .iter()
        .find_map(|(_, f)| f.provenance.as_ref().map(|p| p.commit.to_string()))
    {
        lines.push(String::new());
        lines.push(format!(
            "# the source it was built from:\ngit checkout {commit}"
        ));
    }
    lines.join("\n")
}

/// A release's page.
pub fn release_page(page: &ReleasePage, origin: &str) -> Value {
    let files: Vec<Value> = page
        .files
        .iter()
        .map(|(index, f)| {
            json!({
                "filename": f.filename,
                "sha256": f.sha256.to_string(),
                "size": f.size,
                "index": index.to_string(),
                "url": format!("/{index}/+f/{}/{}", f.sha256, f.filename),
                "yanked": f.yanked,
                "yanked_reason": f.yanked_reason,
                "provenance": f.provenance,
            })
        })
        .collect();
    let filename_of = |sha: &str| {
        page.files
            .iter()
            .find(|(_, f)| f.sha256.as_str() == sha)
            .map_or_else(String::new, |(_, f)| f.filename.clone())
    };
    let stages: Vec<Value> = page
        .stages
        .iter()
        .map(|s| {
            let runs: Vec<Value> = s
                .runs
                .iter()
                .map(|r| {
                    let mut run = serde_json::to_value(r).unwrap_or(Value::Null);
                    run["file"] = filename_of(&r.sha256).into();
                    run["artifact"] = r.artifact.as_ref().map_or(Value::Null, |a| {
                        serde_json::to_string(a).unwrap_or_default().into()
                    });
                    run
                })
                .collect();
            json!({ "stage": s.stage, "outcome": s.outcome.as_str(), "runs": runs })
        })
        .collect();
    let verdict = &page.verdict;
    let yanked = page
        .files
        .iter()
        .filter(|(_, f)| f.yanked)
        .map(|(_, f)| f.yanked_reason.clone().unwrap_or_else(|| "yanked".into()))
        .next()
        .filter(|_| page.files.iter().all(|(_, f)| f.yanked));
    json!({
        "index": page.index.to_string(),
        "project": page.release.project.to_string(),
        "version": page.release.version.to_string(),
        "build": build(&page.build),
        "verdict": { "state": verdict.state().as_str(), "summary": verdict.summary() },
        "yanked": yanked,
        "files": files,
        "stages": stages,
        "promotions": page.promotions,
        "previews": page.previews,
        "reproduce": reproduce(page, origin),
    })
}

/// A badge's label, message and tone.
pub fn badge_text(
    project: &ProjectName,
    stage: Option<&str>,
    newest: Option<&(String, Verdict)>,
) -> (String, String, Tone) {
    let label = match stage {
        Some(stage) => format!("{project} {stage}"),
        None => project.to_string(),
    };
    let Some((version, verdict)) = newest else {
        return (label, "no release".to_owned(), Tone::Unknown);
    };
    if let Some(stage) = stage {
        return match verdict.stages.get(stage) {
            Some(outcome) => (
                label,
                format!("{version} {}", outcome.as_str()),
                if *outcome == crate::domain::Outcome::Pass {
                    Tone::Pass
                } else {
                    Tone::Fail
                },
            ),
            None => (label, format!("{version} not run"), Tone::Pending),
        };
    }
    let tone = match verdict.state() {
        VerdictState::Passed => Tone::Pass,
        VerdictState::Failed => Tone::Fail,
        VerdictState::Incomplete | VerdictState::Untested => Tone::Pending,
    };
    (
        label,
        format!("{version} {}", verdict.state().as_str()),
        tone,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_times_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(80_000_000), "80.0 MB");
        assert_eq!(human_ms(850), "850 ms");
        assert_eq!(human_ms(12_400), "12.4 s");
        assert_eq!(human_ms(185_000), "3 min 5 s");
        assert_eq!(
            when(Some("2026-12-03T10:24:28.123456Z".into())),
            "2026-12-03 10:24:28 UTC"
        );
        assert_eq!(when(Some("not a time".into())), "not a time");
        assert_eq!(when(None), "—");
    }

    #[test]
    fn commands_to_copy_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("acme==1.0"), "acme==1.0");
        assert_eq!(shell_quote("acme==1.0+local;x"), "'acme==1.0+local;x'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
