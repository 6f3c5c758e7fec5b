//! The CI side of Kiln: what `kiln ensure`, `kiln stage` and `kiln report` do on a runner.
//!
//! [`ensure`] finds the branch and build number, computes the version, makes sure the
//! branch index exists, and makes sure the wheel is on it — building it only if this
//! runner wins the server's build lease, otherwise waiting for the runner that did.
//! [`stage`] runs a stage command against that exact wheel and reports the verdict against
//! its sha256. Everything here talks to the server through [`Client`](crate::client::Client)
//! only, like any other CI tool would.

pub mod build;
pub mod ensure;
pub mod junit;
pub mod progress;
pub mod project;
pub mod retry;
pub mod run;
pub mod stage;
pub mod target;
pub mod verify;

use crate::client::ClientError;
use crate::domain::build_version::VersionError;
use crate::domain::ci::CiContextError;

/// Why a hook could not do its job. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The CI context is incomplete.
    #[error(transparent)]
    Context(#[from] CiContextError),
    /// The version could not be computed.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The project files are unusable.
    #[error("{0}")]
    Project(String),
    /// The server refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The build failed (here or on the runner that held the lease).
    #[error("{0}")]
    BuildFailed(String),
    /// A local file or process operation failed.
    #[error("{0}")]
    Io(String),
    /// This runner cannot do its part (no interpreter, no build frontend).
    #[error("{0}")]
    Environment(String),
    /// Waited too long for another runner's build.
    #[error("{0}")]
    Timeout(String),
}
