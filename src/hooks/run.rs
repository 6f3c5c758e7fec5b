//! Running a child process with its output streamed live and its tail kept.
//!
//! CI users watch the log as it happens, so output is forwarded chunk by chunk (stdout to
//! stdout, stderr to stderr), not line-buffered or held until exit. The last bytes of both
//! streams, interleaved as they arrived, are kept for the build's `failed` state and for
//! a stage result's log tail.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A finished process.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// The last bytes of its combined output (lossy UTF-8).
    pub tail: String,
    /// True when it was killed for running past its time limit.
    pub timed_out: bool,
}

impl Finished {
    /// The signal that killed it, if one did.
    #[must_use]
    pub fn signal(&self) -> Option<i32> {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt as _;
            self.status.signal()
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// The exit code, or `128 + signal` for a process killed by a signal (the shell's
    /// convention, so CI shows the usual number).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if let Some(code) = self.status.code() {
            return code;
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt as _;
            if let Some(signal) = self.status.signal() {
                return 128 + signal;
            }
        }
        1
    }
}

type Tail = Arc<Mutex<VecDeque<u8>>>;

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    tail: Tail,
    keep: usize,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A closed terminal must not kill the child's output capture.
        let _ = to.write_all(&buf[..n]).await;
        let _ = to.flush().await;
        let mut kept = tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.extend(&buf[..n]);
        let excess = kept.len().saturating_sub(keep);
        kept.drain(..excess);
    }
}

/// Runs `command` to completion (or until `limit`, when it is killed), streaming its
/// output and keeping the last `keep` bytes.
pub async fn run_teed(
    mut command: tokio::process::Command,
    keep: usize,
    limit: Option<std::time::Duration>,
) -> std::io::Result<Finished> {
    command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let tail: Tail = Arc::default();
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(pump(out, tokio::io::stdout(), Arc::clone(&tail), keep)));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(pump(err, tokio::io::stderr(), Arc::clone(&tail), keep)));
    let (status, timed_out) = if let Some(limit) = limit {
        if let Ok(status) = tokio::time::timeout(limit, child.wait()).await {
            (status?, false)
        } else {
            child.start_kill()?;
            (child.wait().await?, true)
        }
    } else {
        (child.wait().await?, false)
    };
    for pump in [stdout, stderr].into_iter().flatten() {
        if timed_out {
            // A killed command's own children may still hold its pipes open: keep what
            // arrived and stop listening after a moment.
            let abort = pump.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), pump)
                .await
                .is_err()
            {
                abort.abort();
            }
        } else {
            let _ = pump.await;
        }
    }
    let bytes: Vec<u8> = tail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .copied()
        .collect();
    Ok(Finished {
        status,
        tail: String::from_utf8_lossy(&bytes).into_owned(),
        timed_out,
    })
}
