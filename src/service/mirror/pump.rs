//! Mirrored files: one upstream download per file however many clients ask, streamed to
//! every one of them from a temporary file while it is hashed, held back by its last byte
//! until the sha256 matches and the blob is stored.

use super::*;

#[derive(Clone)]
pub(super) enum FlightState {
    Connecting,
    Receiving {
        file: Arc<std::fs::File>,
        length: Option<u64>,
        written: u64,
    },
    Done {
        file: Arc<std::fs::File>,
        size: u64,
    },
    Failed(UpstreamError),
}

impl Mirrors {
    /// Starts (or joins) the download of a mirrored file that is not stored yet.
    pub async fn download(
        self: &Arc<Self>,
        db: &Db,
        storage: &Storage,
        mirror: &Index,
        file: &MirrorFileRecord,
    ) -> Result<Download, UpstreamError> {
        let digest = file.sha256.clone();
        let settings = settings(mirror)?.clone();
        let pump = Pump {
            upstream: self.upstream.clone(),
            settings,
            mirror: mirror.name.clone(),
            file: file.clone(),
            digest: digest.clone(),
            db: db.clone(),
            storage: storage.clone(),
            tmp_dir: self.tmp_dir.clone(),
            max_bytes: self.max_file_bytes,
        };
        let mut state = self.files.join(
            digest.as_str().to_owned(),
            FlightState::Connecting,
            |sender| pump.run(sender),
        );
        let length = loop {
            match &*state.borrow_and_update() {
                FlightState::Connecting => {}
                FlightState::Receiving { length, .. } => break *length,
                FlightState::Done { size, .. } => break Some(*size),
                FlightState::Failed(err) => return Err(err.clone()),
            }
            if state.changed().await.is_err() {
                return Err(local("downloading", "the download task ended unexpectedly"));
            }
        };
        Ok(Download {
            length,
            body: tail(state),
        })
    }

    /// The core metadata of a mirrored file: stored, or fetched once, verified and stored.
    pub async fn metadata(
        self: &Arc<Self>,
        db: &Db,
        storage: &Storage,
        mirror: &Index,
        file: &MirrorFileRecord,
    ) -> Result<Bytes, UpstreamError> {
        let digest = file
            .metadata_sha256
            .clone()
            .ok_or_else(|| local("the listed metadata sha256", "the upstream lists none"))?;
        if db
            .blob_exists(digest.as_str())
            .await
            .map_err(|e| local("reading the cache", e))?
        {
            return storage
                .read_all(&digest)
                .await
                .map_err(|e| local("reading the cached metadata", e));
        }
        let upstream = self.upstream.clone();
        let settings = settings(mirror)?.clone();
        let url = format!("{}.metadata", file.url);
        let db = db.clone();
        let storage = storage.clone();
        let key = digest.as_str().to_owned();
        self.metadata
            .run(key, move || async move {
                let bytes = upstream
                    .fetch_small(&settings, &url, MAX_METADATA_BYTES)
                    .await?;
                let got = Sha256Digest::of(&bytes);
                if got != digest {
                    let err = UpstreamError::Garbage {
                        url,
                        why: format!("core metadata has sha256 {got}, but the page lists {digest}"),
                    };
                    tracing::warn!(error = %err, "refused upstream metadata");
                    return Err(err);
                }
                storage
                    .put_bytes(&digest, bytes.clone())
                    .await
                    .map_err(|e| local("storing metadata", e))?;
                db.record_blob(
                    digest.as_str(),
                    i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                    &now_rfc3339(),
                )
                .await
                .map_err(|e| local("recording metadata", e))?;
                // Garbage collection may have taken the bytes before the row named them.
                if !storage
                    .exists(&digest)
                    .await
                    .map_err(|e| local("checking metadata", e))?
                {
                    storage
                        .put_bytes(&digest, bytes.clone())
                        .await
                        .map_err(|e| local("storing metadata", e))?;
                }
                Ok(bytes)
            })
            .await
            .map_err(|e| local("fetching metadata", e))?
    }
}

/// Streams a download to one client by tailing the flight's temporary file.
fn tail(state: watch::Receiver<FlightState>) -> ByteStream {
    futures_util::stream::unfold(
        (state, 0u64, false),
        |(mut state, offset, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let snapshot = state.borrow_and_update().clone();
                let (file, available) = match snapshot {
                    // The last byte is held back until the whole file is verified (and
                    // stored): a client never holds a complete download of bytes that turn
                    // out not to match, and one that does can count on the cache.
                    FlightState::Receiving { file, written, .. } => {
                        (file, written.saturating_sub(1))
                    }
                    FlightState::Done { file, size } if size > offset => (file, size),
                    FlightState::Done { .. } => return None,
                    FlightState::Failed(err) => {
                        let err = std::io::Error::other(err.to_string());
                        return Some((Err(err), (state, offset, true)));
                    }
                    FlightState::Connecting => {
                        if state.changed().await.is_err() {
                            return None;
                        }
                        continue;
                    }
                };
                if available <= offset {
                    if state.changed().await.is_err() {
                        let err = std::io::Error::other("the download task ended unexpectedly");
                        return Some((Err(err), (state, offset, true)));
                    }
                    continue;
                }
                let want = usize::try_from((available - offset).min(TAIL_CHUNK as u64))
                    .unwrap_or(TAIL_CHUNK);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    let n = file.read_at(&mut buf, offset)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                return match read {
                    Ok(buf) if !buf.is_empty() => {
                        let next = offset + buf.len() as u64;
                        Some((Ok(Bytes::from(buf)), (state, next, false)))
                    }
                    Ok(_) => {
                        let err =
                            std::io::Error::other("the cached download is shorter than expected");
                        Some((Err(err), (state, offset, true)))
                    }
                    Err(err) => Some((Err(err), (state, offset, true))),
                };
            }
        },
    )
    .boxed()
}

/// The task that downloads one file from the upstream for every client waiting on it.
struct Pump {
    upstream: Upstream,
    settings: MirrorSettings,
    mirror: IndexName,
    file: MirrorFileRecord,
    digest: Sha256Digest,
    db: Db,
    storage: Storage,
    tmp_dir: PathBuf,
    max_bytes: u64,
}

impl Pump {
    /// Runs the transfer; the flight is released when it ends (see [`Streams`]), so even
    /// a panicking transfer leaves the next request free to start afresh.
    async fn run(self, state: watch::Sender<FlightState>) {
        if let Err(err) = self.transfer(&state).await {
            tracing::warn!(mirror = %self.mirror, file = %self.file.filename, error = %err, "mirrored download failed; nothing cached");
            let _ = state.send(FlightState::Failed(err));
        }
    }

    fn garbage(&self, why: String) -> UpstreamError {
        UpstreamError::Garbage {
            url: self.file.url.clone(),
            why,
        }
    }

    async fn transfer(&self, state: &watch::Sender<FlightState>) -> Result<(), UpstreamError> {
        let response = self
            .upstream
            .open_file(&self.settings, &self.file.url)
            .await?;
        let length = self.announced_length(&response)?;
        tokio::fs::create_dir_all(&self.tmp_dir)
            .await
            .map_err(|e| local("creating the temp directory", e))?;
        let temp = tempfile::Builder::new()
            .prefix(".mirror-")
            .tempfile_in(&self.tmp_dir)
            .map_err(|e| local("creating a temp file", e))?;
        let reader = Arc::new(
            temp.reopen()
                .map_err(|e| local("opening the temp file", e))?,
        );
        let writer = tokio::fs::File::from_std(
            temp.as_file()
                .try_clone()
                .map_err(|e| local("opening the temp file", e))?,
        );
        let _ = state.send(FlightState::Receiving {
            file: Arc::clone(&reader),
            length,
            written: 0,
        });
        let written = self.receive(response, writer, length, state).await?;
        // Keep the bytes for good before the readers see the end, so a client that has a
        // complete download can count on the next one coming from storage. A failure to
        // store costs only the cache: the verified bytes still reach every client.
        let stored = self.keep(temp.path(), written).await;
        let _ = state.send(FlightState::Done {
            file: reader,
            size: written,
        });
        match stored {
            Ok(()) => {
                tracing::info!(mirror = %self.mirror, file = %self.file.filename, bytes = written, "mirrored file cached");
            }
            Err(err) => {
                tracing::error!(mirror = %self.mirror, file = %self.file.filename, error = %err, "verified mirrored file could not be cached; it was served anyway");
            }
        }
        Ok(())
    }

    /// The length the upstream announced (or the page listed), checked against the page
    /// and the size limit.
    fn announced_length(&self, response: &reqwest::Response) -> Result<Option<u64>, UpstreamError> {
        let listed = self.file.size;
        if let (Some(sent), Some(listed)) = (response.content_length(), listed)
            && sent != listed
        {
            return Err(self.garbage(format!(
                "the file is {sent} bytes, but the page lists {listed}"
            )));
        }
        let length = response.content_length().or(listed);
        if let Some(length) = length
            && length > self.max_bytes
        {
            return Err(self.garbage(format!(
                "the file is {length} bytes, over this server's {}-byte limit (--max-upload-size)",
                self.max_bytes
            )));
        }
        Ok(length)
    }

    /// Copies the body into the temp file, announcing progress, and verifies it.
    async fn receive(
        &self,
        response: reqwest::Response,
        mut writer: tokio::fs::File,
        length: Option<u64>,
        state: &watch::Sender<FlightState>,
    ) -> Result<u64, UpstreamError> {
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UpstreamError::Unreachable {
                url: self.file.url.clone(),
                cause: format!("the download broke off after {written} bytes: {e}"),
            })?;
            written += chunk.len() as u64;
            crate::metrics::metrics()
                .upstream_bytes
                .inc_by(chunk.len() as u64);
            if written > self.max_bytes {
                return Err(self.garbage(format!(
                    "the file is over this server's {}-byte limit (--max-upload-size)",
                    self.max_bytes
                )));
            }
            hasher.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| local("writing the temp file", e))?;
            writer
                .flush()
                .await
                .map_err(|e| local("writing the temp file", e))?;
            state.send_modify(|s| {
                if let FlightState::Receiving { written: w, .. } = s {
                    *w = written;
                }
            });
        }
        let got = hex::encode(hasher.finalize());
        if got != self.digest.as_str() {
            return Err(self.garbage(format!(
                "the bytes have sha256 {got}, but the page lists {}",
                self.digest
            )));
        }
        if let Some(length) = length
            && length != written
        {
            return Err(self.garbage(format!(
                "the file is {written} bytes, but {length} were announced"
            )));
        }
        Ok(written)
    }

    /// Stores verified bytes by digest and records the blob.
    async fn keep(&self, path: &std::path::Path, size: u64) -> Result<(), UpstreamError> {
        self.storage
            .put_file(&self.digest, path, size)
            .await
            .map_err(|e| local("storing the file", e))?;
        self.db
            .record_blob(
                self.digest.as_str(),
                i64::try_from(size).unwrap_or(i64::MAX),
                &now_rfc3339(),
            )
            .await
            .map_err(|e| local("recording the file", e))?;
        // Garbage collection may have taken the bytes before the row named them.
        if !self
            .storage
            .exists(&self.digest)
            .await
            .map_err(|e| local("checking the stored file", e))?
        {
            self.storage
                .put_file(&self.digest, path, size)
                .await
                .map_err(|e| local("storing the file", e))?;
        }
        Ok(())
    }
}
