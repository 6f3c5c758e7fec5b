//! First start: an empty database gets a usable layout and an admin token.
//!
//! `root/prod` is promotion-only (append-only production); `root/master` inherits from it,
//! so a branch index that inherits `root/master` sees master's builds and everything
//! released. Unless the operator turned it off, `root/pypi` mirrors the upstream index
//! under `root/prod`, so every chain ends in the caching proxy. It all happens in one transaction, claimed with a conditional write, so two
//! replicas starting together bootstrap once.

use super::auth::{create_admin_token, generate_secret};
use super::indexes::create_index_tx;
use super::{ServiceError, now_rfc3339};
use crate::db::Db;
use crate::domain::{
    DEFAULT_MIRROR_TTL_SECONDS, IndexKind, IndexName, IndexSettings, MirrorSettings,
};

/// The production index created at first start.
pub const PROD_INDEX: &str = "root/prod";
/// The master index created at first start.
pub const MASTER_INDEX: &str = "root/master";
/// The mirror of the upstream index created at first start.
pub const MIRROR_INDEX: &str = "root/pypi";

/// What a first start created; shown to the operator once.
#[derive(Debug)]
pub struct Bootstrapped {
    /// The admin token secret.
    pub admin_token: String,
    /// False when the operator fixed the token with `KILN_ADMIN_TOKEN`.
    pub generated: bool,
}

/// Creates the first-start layout unless it exists; returns what it created. `upstream`
/// is the simple index `root/pypi` mirrors (`None`: no mirror).
pub async fn bootstrap(
    db: &Db,
    admin_token: Option<&str>,
    upstream: Option<&str>,
) -> Result<Option<Bootstrapped>, ServiceError> {
    if db.is_bootstrapped().await? {
        return Ok(None);
    }
    let mut tx = db.begin_write().await?;
    if !Db::claim_bootstrap_tx(&mut tx, &now_rfc3339()).await? {
        return Ok(None);
    }
    let prod: IndexName = PROD_INDEX.parse().expect("constant index name is valid");
    let master: IndexName = MASTER_INDEX.parse().expect("constant index name is valid");
    let mut prod_bases = Vec::new();
    if let Some(upstream) = upstream {
        let mirror: IndexName = MIRROR_INDEX.parse().expect("constant index name is valid");
        create_index_tx(
            &mut tx,
            &mirror,
            &IndexSettings {
                kind: IndexKind::Mirror,
                description: "Caching proxy of the upstream index.".into(),
                mirror: Some(MirrorSettings {
                    url: upstream.to_owned(),
                    username: None,
                    password: None,
                    ttl_seconds: DEFAULT_MIRROR_TTL_SECONDS,
                    file_origins: Vec::new(),
                }),
                ..IndexSettings::default()
            },
        )
        .await?;
        prod_bases.push(mirror);
    }
    create_index_tx(
        &mut tx,
        &prod,
        &IndexSettings {
            kind: IndexKind::Stage,
            bases: prod_bases,
            volatile: false,
            promotion_only: true,
            description: "Production: green master builds, promoted; append-only.".into(),
            ..IndexSettings::default()
        },
    )
    .await?;
    create_index_tx(
        &mut tx,
        &master,
        &IndexSettings {
            kind: IndexKind::Stage,
            bases: vec![prod],
            volatile: false,
            promotion_only: false,
            description: "Builds of the main branch.".into(),
            ..IndexSettings::default()
        },
    )
    .await?;
    let (secret, generated) = match admin_token {
        Some(token) => (token.to_owned(), false),
        None => (generate_secret(), true),
    };
    create_admin_token(&mut tx, &secret).await?;
    tx.commit().await?;
    Ok(Some(Bootstrapped {
        admin_token: secret,
        generated,
    }))
}
