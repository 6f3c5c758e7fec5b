//! Tokens and access: who is calling, and may they do this to that index.
//!
//! A secret is `kiln_` followed by 43 URL-safe base64 characters (256 random bits). Only
//! its SHA-256 is stored, so a database leak does not leak working tokens. A request's
//! secret is hashed and looked up by that hash; the stored hash is then compared with the
//! computed one in constant time, so no step's timing depends on the secret's bytes.
//!
//! A token carries scopes ([`Scope`]): a permission on an index pattern. Every refusal
//! names the permission and the index it was missing on, and never whether some other
//! token exists.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use super::{ServiceError, now_rfc3339};
use crate::api::{CreatedToken, TokenRequest, TokenState, TokenView};
use crate::db::changes::{Change, Remembered};
use crate::db::{Db, NewEvent, NewToken, TokenRecord, WriteTx};
use crate::domain::scope::{self, IndexPattern, Permission, Scope};
use crate::domain::{EventKind, Index, IndexName, Sha256Digest};

/// Every token secret starts with this, so secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "kiln_";

/// Longest token label.
const MAX_TOKEN_NAME: usize = 64;

/// Who is making a request: an authenticated token, or the server itself acting on a
/// policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id; `None` for the server itself.
    pub token_id: Option<i64>,
    /// The token's label and id (`ci#7`), recorded as `uploaded_by`, `reported_by`,
    /// `promoted_by`.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The server acting on its own (automatic promotion), with exactly `scopes`.
    #[must_use]
    pub fn system(name: String, scopes: Vec<Scope>) -> Self {
        Self {
            token_id: None,
            name,
            scopes,
        }
    }

    /// True when a scope grants `permission` on `index`.
    #[must_use]
    pub fn allows(&self, permission: Permission, index: &IndexName) -> bool {
        scope::any_allows(&self.scopes, permission, index)
    }

    /// True for a server admin: `admin` on `*`.
    #[must_use]
    pub fn is_server_admin(&self) -> bool {
        scope::covers(&self.scopes, &Scope::admin_all())
    }

    /// Refuses unless a scope grants `permission` on `index`.
    pub fn require(&self, permission: Permission, index: &IndexName) -> Result<(), ServiceError> {
        if self.allows(permission, index) {
            Ok(())
        } else {
            Err(lacks(permission, index, ""))
        }
    }
}

/// Who calls a service: a token's principal, or nobody. Every service that reads protected
/// data or changes anything takes one and checks it first; handlers never decide access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(Option<Principal>);

impl Caller {
    /// A request without credentials.
    #[must_use]
    pub fn anonymous() -> Self {
        Self(None)
    }

    /// The principal, if any.
    #[must_use]
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref()
    }

    /// The principal, or 401 naming how to pass a token.
    pub fn authenticated(&self) -> Result<&Principal, ServiceError> {
        self.0.as_ref().ok_or_else(needs_token)
    }

    /// The principal, refused unless a scope grants `permission` on `index` (401 without
    /// a token, 403 with one that lacks it).
    pub fn require(
        &self,
        permission: Permission,
        index: &IndexName,
    ) -> Result<&Principal, ServiceError> {
        let principal = self.authenticated()?;
        principal.require(permission, index)?;
        Ok(principal)
    }

    /// True when a scope grants `permission` on `index`.
    #[must_use]
    pub fn allows(&self, permission: Permission, index: &IndexName) -> bool {
        self.0.as_ref().is_some_and(|p| p.allows(permission, index))
    }

    /// Refuses unless the caller may read every private index in `chain`.
    pub fn require_read_chain(&self, chain: &[Index]) -> Result<(), ServiceError> {
        require_read(self.principal(), &ChainAccess::of(chain))
    }
}

impl From<Principal> for Caller {
    fn from(principal: Principal) -> Self {
        Self(Some(principal))
    }
}

/// The 401 of a request that needs a token and carries none.
#[must_use]
pub fn needs_token() -> ServiceError {
    ServiceError::Unauthenticated(
        "this needs a token: pass it as `Authorization: Bearer <token>`, or as the password of user `__token__` (twine: `-u __token__ -p <token>`)".into(),
    )
}

/// What reading each index takes, kept until its chain's settings change, so a read of
/// a cached page costs no query.
#[derive(Debug)]
pub struct AccessCache(Remembered<IndexName, ChainAccess>);

impl Default for AccessCache {
    fn default() -> Self {
        Self(Remembered::new(MAX_ACCESS_RULES))
    }
}

/// Most access rules kept at once.
const MAX_ACCESS_RULES: usize = 20_000;

/// What a cached value read from `chain`'s settings depends on: each member's settings
/// (deleting a member changes them too). Creating other indexes changes nothing here.
#[must_use]
pub fn chain_changes(chain: &[Index]) -> Vec<Change> {
    chain.iter().map(|i| Change::Index(i.id)).collect()
}

/// Proof that a caller may read an index, with the change counter read before the check:
/// made only by [`check_read`], and what the page cache takes to remember a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readable {
    read_at: u64,
}

impl Readable {
    /// The change counter read before the check (and before anything rendered after it).
    #[must_use]
    pub fn read_at(self) -> u64 {
        self.read_at
    }
}

/// Refuses unless `caller` may read `index` and every private index it inherits from.
/// The rule is kept until a setting of the chain changes, so a cached page needs no query.
pub async fn check_read(
    db: &Db,
    cache: &AccessCache,
    caller: &Caller,
    index: &IndexName,
) -> Result<Readable, ServiceError> {
    let read_at = db.stamps().now();
    let access = if let Some(access) = cache.0.get(index, db.stamps()) {
        access
    } else {
        let found = super::indexes::get_index(db, index).await?;
        let chain = super::resolve::chain_indexes(db, &found).await?;
        let rule = ChainAccess::of(&chain);
        cache
            .0
            .put(index.clone(), read_at, chain_changes(&chain), rule.clone());
        rule
    };
    require_read(caller.principal(), &access)?;
    Ok(Readable { read_at })
}

/// An index and its chain (the index itself, then everything it inherits), once the
/// caller was found to may read them all.
pub async fn readable_chain(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
) -> Result<(Index, Vec<Index>), ServiceError> {
    let index = super::indexes::get_index(db, name).await?;
    let chain = super::resolve::chain_indexes(db, &index).await?;
    caller.require_read_chain(&chain)?;
    Ok((index, chain))
}

fn lacks(permission: Permission, index: &IndexName, why: &str) -> ServiceError {
    ServiceError::Forbidden(format!(
        "this token lacks `{permission}` on `{index}`{why}; ask an admin of `{}` for a token with the scope `{permission}:{index}` (or `{permission}:{}/*`)",
        index.namespace(),
        index.namespace()
    ))
}

/// What reading an index takes: the index and the private indexes in its chain (itself
/// and everything it inherits). Cached until a setting of the chain changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainAccess {
    /// The index being read.
    pub index: Option<IndexName>,
    /// The private members of its chain, in chain order.
    pub private: Vec<IndexName>,
}

impl ChainAccess {
    /// The access rule of `chain` (an index followed by everything it inherits).
    #[must_use]
    pub fn of(chain: &[Index]) -> Self {
        Self {
            index: chain.first().map(|i| i.name.clone()),
            private: chain
                .iter()
                .filter(|i| i.settings.private)
                .map(|i| i.name.clone())
                .collect(),
        }
    }
}

/// Refuses unless the caller may read every private index in the chain. Public indexes
/// need no token. No token where one is needed is a 401, so pip and uv retry with the
/// credentials of their keyring or netrc.
pub fn require_read(caller: Option<&Principal>, access: &ChainAccess) -> Result<(), ServiceError> {
    for private in &access.private {
        let via = match &access.index {
            Some(first) if first != private => {
                format!(" (a private index that `{first}` inherits from)")
            }
            _ => String::new(),
        };
        match caller {
            None => {
                return Err(ServiceError::Unauthenticated(format!(
                    "index `{private}` is private{via}: reading it needs a token with `read` on it — pip/uv: put `__token__:<token>@` in the index URL, or the token in netrc"
                )));
            }
            Some(principal) if !principal.allows(Permission::Read, private) => {
                return Err(lacks(Permission::Read, private, &via));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// [`require_read`] for a resolved chain.
pub fn require_read_chain(caller: Option<&Principal>, chain: &[Index]) -> Result<(), ServiceError> {
    require_read(caller, &ChainAccess::of(chain))
}

/// True when [`require_read_chain`] would pass.
#[must_use]
pub fn can_read(caller: Option<&Principal>, chain: &[Index]) -> bool {
    require_read_chain(caller, chain).is_ok()
}

/// Every index the caller may read, with the server's whole index list loaded once and
/// each chain walked in memory.
pub async fn readable_indexes(
    db: &Db,
    caller: Option<&Principal>,
) -> Result<Vec<Index>, ServiceError> {
    let all = db.list_indexes().await?;
    let by_name: HashMap<&IndexName, &Index> = all.iter().map(|i| (&i.name, i)).collect();
    let readable = |start: &Index| {
        let mut chain: Vec<&Index> = vec![start];
        let mut seen: HashSet<&IndexName> = HashSet::from([&start.name]);
        let mut next = 0;
        while let Some(index) = chain.get(next).copied() {
            next += 1;
            for base in &index.settings.bases {
                if let Some(found) = by_name.get(base).filter(|_| seen.insert(base)) {
                    chain.push(found);
                }
            }
        }
        let chain: Vec<Index> = chain.into_iter().cloned().collect();
        can_read(caller, &chain)
    };
    Ok(all.iter().filter(|i| readable(i)).cloned().collect())
}

/// A fresh random token secret.
#[must_use]
pub fn generate_secret() -> String {
    random_secret(TOKEN_PREFIX)
}

/// `prefix` and 256 random bits as 43 URL-safe base64 characters.
#[must_use]
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn hash_secret(secret: &str) -> String {
    Sha256Digest::of(secret.as_bytes()).to_string()
}

fn parse_scopes(record: &TokenRecord) -> Result<Vec<Scope>, ServiceError> {
    serde_json::from_str(&record.scopes).map_err(|e| {
        ServiceError::Internal(format!("token {} has unreadable scopes: {e}", record.id))
    })
}

fn has_passed(time: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(time).map_or(true, |t| t <= chrono::Utc::now())
}

/// Why token `id` no longer acts (revoked, expired or gone); `None` while it works. A
/// webhook's deliveries stop with its owner's token.
pub async fn why_inactive(db: &Db, id: i64) -> Result<Option<String>, ServiceError> {
    let Some(record) = db.token_by_id(id).await? else {
        return Ok(Some(format!("its owner token {id} no longer exists")));
    };
    Ok(match view(&record)?.state {
        TokenState::Active => None,
        TokenState::Revoked => Some(format!(
            "its owner token `{}#{id}` was revoked",
            record.name
        )),
        TokenState::Expired => Some(format!("its owner token `{}#{id}` expired", record.name)),
    })
}

fn view(record: &TokenRecord) -> Result<TokenView, ServiceError> {
    let state = if record.revoked_at.is_some() {
        TokenState::Revoked
    } else if record.expires_at.as_deref().is_some_and(has_passed) {
        TokenState::Expired
    } else {
        TokenState::Active
    };
    Ok(TokenView {
        id: record.id,
        name: record.name.clone(),
        scopes: parse_scopes(record)?,
        created_at: record.created_at.clone(),
        expires_at: record.expires_at.clone(),
        revoked_at: record.revoked_at.clone(),
        created_by: record.created_by.clone(),
        state,
    })
}

/// Parses an expiry: RFC 3339, or a date meaning midnight UTC at its start.
fn parse_expiry(text: &str) -> Result<String, ServiceError> {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .map_err(|_| {
            ServiceError::Invalid(format!(
                "`expires_at` `{}` is neither an RFC 3339 time nor a YYYY-MM-DD date",
                text.escape_debug()
            ))
        })?;
    if time <= chrono::Utc::now() {
        return Err(ServiceError::Invalid(format!(
            "`expires_at` {time} is in the past"
        )));
    }
    Ok(time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    let valid = !name.trim().is_empty()
        && name.len() <= MAX_TOKEN_NAME
        && name.chars().all(|c| !c.is_control() && c != '#');
    if !valid {
        return Err(ServiceError::Invalid(format!(
            "a token name must be 1-{MAX_TOKEN_NAME} printable characters, without `#`"
        )));
    }
    let lowered = name.trim().to_ascii_lowercase();
    let reserved = RESERVED_TOKEN_NAMES.contains(&lowered.as_str())
        || lowered.starts_with("auto ")
        || lowered.starts_with("auto(");
    if reserved {
        return Err(ServiceError::Invalid(format!(
            "the token name `{}` is reserved for the server's own actors (the first admin token, automatic promotions); pick another",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Names the server records for itself, which no minted token may take.
const RESERVED_TOKEN_NAMES: &[&str] = &["admin", "auto", "kiln", "server", "system", "anonymous"];

/// The admin scope a caller needs to hand out `wanted` (or to manage what concerns a
/// pattern, e.g. a webhook): `admin` on its pattern.
pub(super) fn admin_over(pattern: &IndexPattern) -> Scope {
    Scope {
        permission: Permission::Admin,
        pattern: pattern.clone(),
    }
}

/// True when `caller` may see and revoke `target`: its own token, or one whose every
/// scope lies within the caller's `admin` scopes.
fn manages(caller: &Principal, target: &TokenRecord, scopes: &[Scope]) -> bool {
    caller.token_id == Some(target.id) || administers(caller, scopes)
}

/// True when every scope lies within the caller's `admin` scopes: who may see a token's
/// events and manage it.
#[must_use]
pub fn administers(caller: &Principal, scopes: &[Scope]) -> bool {
    scopes
        .iter()
        .all(|s| scope::covers(&caller.scopes, &admin_over(&s.pattern)))
}

/// A token event (no secret, ever): what it grants, so the event is shown to whoever
/// administers those scopes.
fn token_event<'a>(
    kind: EventKind,
    (id, name, expires_at): (i64, &str, Option<&str>),
    scopes: &[Scope],
    actor: &'a str,
    at: &'a str,
) -> NewEvent<'a> {
    NewEvent {
        kind,
        index: None,
        project: None,
        version: None,
        actor,
        at,
        detail: serde_json::json!({
            "token_id": id,
            "name": name,
            "scopes": scopes,
            "expires_at": expires_at,
        }),
    }
}

/// Creates a token; the caller needs `admin` on every pattern it grants.
pub async fn create_token(
    db: &Db,
    caller: &Caller,
    request: &TokenRequest,
) -> Result<CreatedToken, ServiceError> {
    let caller = caller.authenticated()?;
    check_name(&request.name)?;
    if request.scopes.is_empty() {
        return Err(ServiceError::Invalid(
            "a token needs at least one scope, e.g. `upload:acme/*`".into(),
        ));
    }
    for wanted in &request.scopes {
        let needed = admin_over(&wanted.pattern);
        if !scope::covers(&caller.scopes, &needed) {
            return Err(ServiceError::Forbidden(format!(
                "granting `{wanted}` needs `admin` on `{}`, which this token lacks",
                wanted.pattern
            )));
        }
    }
    let expires_at = request
        .expires_at
        .as_deref()
        .map(parse_expiry)
        .transpose()?;
    let mut scopes = request.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let secret = generate_secret();
    let mut tx = db.begin_write().await?;
    let id = insert(
        &mut tx,
        &request.name,
        &secret,
        &scopes,
        expires_at.as_deref(),
        Some(&caller.name),
    )
    .await?;
    let now = now_rfc3339();
    Db::insert_event_tx(
        &mut tx,
        &token_event(
            EventKind::TokenCreated,
            (id, &request.name, expires_at.as_deref()),
            &scopes,
            &caller.name,
            &now,
        ),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(token.id = id, token.name = %request.name, token.created_by = %caller.name, "token created");
    let record = db
        .token_by_id(id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("token {id} vanished")))?;
    Ok(CreatedToken {
        token: view(&record)?,
        secret,
    })
}

async fn insert(
    tx: &mut WriteTx,
    name: &str,
    secret: &str,
    scopes: &[Scope],
    expires_at: Option<&str>,
    created_by: Option<&str>,
) -> Result<i64, ServiceError> {
    let scopes = serde_json::to_string(scopes).expect("scopes serialize");
    Ok(Db::insert_token_tx(
        tx,
        &NewToken {
            name,
            secret_sha256: &hash_secret(secret),
            scopes: &scopes,
            created_at: &now_rfc3339(),
            expires_at,
            created_by,
        },
    )
    .await?)
}

/// Stores the first-start admin token (`admin:*`) for `secret`.
pub async fn create_admin_token(tx: &mut WriteTx, secret: &str) -> Result<(), ServiceError> {
    if secret.len() < 16 {
        return Err(ServiceError::Invalid(
            "a token must be at least 16 characters long".into(),
        ));
    }
    insert(tx, "admin", secret, &[Scope::admin_all()], None, None).await?;
    Ok(())
}

/// The tokens the caller may manage (see [`revoke_token`]), oldest first.
pub async fn list_tokens(db: &Db, caller: &Caller) -> Result<Vec<TokenView>, ServiceError> {
    let caller = caller.authenticated()?;
    let mut views = Vec::new();
    for record in db.list_tokens().await? {
        let scopes = parse_scopes(&record)?;
        if manages(caller, &record, &scopes) {
            views.push(view(&record)?);
        }
    }
    Ok(views)
}

/// Revokes a token at once: the next request with it is refused. The caller may revoke
/// its own token, and any token whose every scope lies within its `admin` scopes. A
/// token it may not manage is reported exactly like one that does not exist.
pub async fn revoke_token(db: &Db, caller: &Caller, id: i64) -> Result<TokenView, ServiceError> {
    let caller = caller.authenticated()?;
    let not_found = || {
        ServiceError::NotFound(format!(
            "no token with id {id} that this token may manage (`kiln token list` shows those)"
        ))
    };
    let record = db.token_by_id(id).await?.ok_or_else(not_found)?;
    if !manages(caller, &record, &parse_scopes(&record)?) {
        return Err(not_found());
    }
    let now = now_rfc3339();
    let mut tx = db.begin_write().await?;
    Db::revoke_token_tx(&mut tx, id, &now).await?;
    Db::insert_event_tx(
        &mut tx,
        &token_event(
            EventKind::TokenRevoked,
            (record.id, &record.name, record.expires_at.as_deref()),
            &parse_scopes(&record)?,
            &caller.name,
            &now,
        ),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(token.id = id, token.name = %record.name, token.revoked_by = %caller.name, "token revoked");
    let record = db.token_by_id(id).await?.ok_or_else(not_found)?;
    view(&record)
}

/// Finds the principal a secret belongs to, refusing revoked and expired tokens.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Principal, ServiceError> {
    let digest = hash_secret(secret);
    let invalid = || {
        ServiceError::Forbidden(
            "the token is not valid on this server (mistyped, or issued by another Kiln)".into(),
        )
    };
    let record = db.find_token(&digest).await?.ok_or_else(invalid)?;
    if !bool::from(record.secret_sha256.as_bytes().ct_eq(digest.as_bytes())) {
        return Err(invalid());
    }
    if let Some(revoked) = &record.revoked_at {
        return Err(ServiceError::Forbidden(format!(
            "the token was revoked at {revoked}; ask an admin for a new one"
        )));
    }
    if let Some(expires) = record.expires_at.as_deref().filter(|t| has_passed(t)) {
        return Err(ServiceError::Forbidden(format!(
            "the token expired at {expires}; ask an admin for a new one"
        )));
    }
    Ok(Principal {
        token_id: Some(record.id),
        // Recorded as `uploaded_by`, `reported_by`, … with the token's id, so two tokens
        // of one name can never be taken for each other.
        name: format!("{}#{}", record.name, record.id),
        scopes: parse_scopes(&record)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_secret(&a).len(), 64);
    }

    #[test]
    fn expiry_accepts_times_and_dates_in_the_future_only() {
        assert_eq!(parse_expiry("2999-01-02").unwrap(), "2999-01-02T00:00:00Z");
        assert_eq!(
            parse_expiry("2999-01-02T03:04:05+01:00").unwrap(),
            "2999-01-02T02:04:05Z"
        );
        assert!(
            parse_expiry("2001-01-01")
                .unwrap_err()
                .to_string()
                .contains("in the past")
        );
        assert!(
            parse_expiry("soon")
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
    }

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            token_id: None,
            name: "p".into(),
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn index(name: &str, private: bool) -> Index {
        Index {
            id: 0,
            name: name.parse().unwrap(),
            settings: crate::domain::IndexSettings {
                private,
                ..Default::default()
            },
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn reading_a_chain_needs_read_on_each_private_member() {
        let chain = [index("acme/dev", false), index("acme/master", true)];
        let anonymous = require_read_chain(None, &chain).unwrap_err();
        assert!(matches!(anonymous, ServiceError::Unauthenticated(_)));
        assert!(
            anonymous.to_string().contains(
                "`acme/master` is private (a private index that `acme/dev` inherits from)"
            )
        );
        let other = require_read_chain(Some(&principal(&["read:other/*"])), &chain).unwrap_err();
        assert!(
            other.to_string().contains("lacks `read` on `acme/master`"),
            "{other}"
        );
        assert!(can_read(Some(&principal(&["read:acme/*"])), &chain));
        assert!(can_read(Some(&principal(&["admin:acme/master"])), &chain));
        assert!(can_read(None, &[index("acme/dev", false)]));
    }

    #[test]
    fn refusals_name_permission_and_index() {
        let ci = principal(&["upload:acme/*", "report:acme/*"]);
        let err = ci
            .require(Permission::Promote, &"acme/prod".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks `promote` on `acme/prod`"), "{err}");
        assert!(
            ci.require(Permission::Upload, &"acme/x".parse().unwrap())
                .is_ok()
        );
    }
}
