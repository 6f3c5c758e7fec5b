//! Pure domain types: names, versions, filenames, digests, index settings, CI context.
//!
//! Nothing in here does I/O except through a reader it is handed, so every rule can be
//! unit-tested (and fuzzed) without a server, a database or a disk.

pub mod archive;
pub mod branch;
pub mod build_version;
pub mod ci;
pub mod digest;
pub mod dist_filename;
pub mod event;
pub mod index;
pub mod index_name;
pub mod metadata;
pub mod project_name;
#[cfg(test)]
mod properties;
pub mod provenance;
pub mod release;
pub mod requirement;
pub mod scope;
pub mod stage;
pub mod target;
pub mod trash;
pub mod upstream_page;
pub mod webhook;
pub mod zipwalk;

pub use archive::{ArchiveError, ArchiveLimits};
pub use digest::Sha256Digest;
pub use dist_filename::{DistFilename, DistKind, FilenameError};
pub use event::EventKind;
pub use index::{DEFAULT_MIRROR_TTL_SECONDS, Index, IndexKind, IndexSettings, MirrorSettings};
pub use index_name::{IndexName, IndexNameError};
pub use metadata::{CoreMetadata, MetadataError};
pub use project_name::{ProjectName, ProjectNameError};
pub use provenance::{Provenance, SourceCommit};
pub use release::Release;
pub use scope::{IndexPattern, Permission, Scope};
pub use stage::{ArtifactCheck, Check, Outcome, check_stage_name};
pub use target::BuildTarget;
pub use trash::TrashKind;
pub use webhook::{DeliveryState, WebhookEvent};

/// Hides a password in a database URL before it is shown.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
