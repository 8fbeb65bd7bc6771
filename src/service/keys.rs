//! API keys: authentication, creation, listing, revocation, and the first admin key.
use super::{ServiceError, Services};
use crate::domain::FieldError;
use crate::domain::auth::{ApiToken, Principal, Role};
use crate::domain::context::RequestContext;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::names;
use crate::domain::time::now_rfc3339;
use crate::store::KeyRow;
use serde::{Deserialize, Serialize};

/// Input of `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    pub role: Role,
    /// Required for `org_admin` and `reader`; not allowed otherwise.
    #[serde(default)]
    pub org_id: Option<String>,
    /// Publisher only: services it may publish for (absent/empty = all).
    #[serde(default)]
    pub services: Option<Vec<String>>,
    /// Publisher only: orgs it may publish for (absent/empty = all).
    #[serde(default)]
    pub orgs: Option<Vec<String>>,
    #[serde(default)]
    pub label: Option<String>,
}

/// A key as the API shows it (never the secret, except `key` once at creation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// The full API key; present only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub role: Role,
    pub org_id: Option<String>,
    pub services: Vec<String>,
    pub orgs: Vec<String>,
    pub label: Option<String>,
    pub created_at: String,
    #[schema(value_type = Option<Object>)]
    pub created_context: Option<serde_json::Value>,
    pub revoked_at: Option<String>,
}

impl KeyOut {
    fn from_row(r: KeyRow, key: Option<String>) -> Self {
        Self {
            id: r.id,
            key,
            role: Role::parse(&r.role).unwrap_or(Role::Reader),
            org_id: r.org_id,
            services: r.services,
            orgs: r.orgs,
            label: r.label,
            created_at: r.created_at,
            created_context: r
                .created_context
                .and_then(|c| serde_json::from_str(&c).ok()),
            revoked_at: r.revoked_at,
        }
    }
}

/// One page of keys.
pub struct KeyPage {
    pub keys: Vec<KeyOut>,
    pub next_cursor: Option<String>,
}

const KEYS_SCOPE: &str = "keys";

/// How long a verified key is trusted without asking the store again. Revocation through this
/// process evicts the entry at once; another node's revocation is seen within this time.
const AUTH_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most cached keys; the cache is cleared when it grows past this.
const AUTH_CACHE_MAX: usize = 10_000;

/// Recently verified keys, so a hot path does not hit the store for every request.
#[derive(Default)]
pub struct AuthCache {
    /// Bumped by every eviction; a lookup that started before one does not cache its result.
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<
        std::collections::HashMap<String, (String, Principal, std::time::Instant)>,
    >,
}

impl AuthCache {
    fn get(&self, token: &ApiToken) -> Option<Principal> {
        let map = self.entries.lock().ok()?;
        let (hash, p, at) = map.get(&token.key_id)?;
        (at.elapsed() < AUTH_TTL && token.matches_hash(hash)).then(|| p.clone())
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn put(&self, seen: u64, hash: String, p: Principal) {
        if let Ok(mut map) = self.entries.lock() {
            if self.generation() != seen {
                return;
            }
            if map.len() >= AUTH_CACHE_MAX {
                map.clear();
            }
            map.insert(p.key_id.clone(), (hash, p, std::time::Instant::now()));
        }
    }

    fn evict(&self, key_id: &str) {
        if let Ok(mut map) = self.entries.lock() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            map.remove(key_id);
        }
    }
}

impl Services {
    /// Resolves a bearer token to its principal; any failure is `Unauthorized`.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, ServiceError> {
        let token = ApiToken::parse(bearer).ok_or(ServiceError::Unauthorized)?;
        if let Some(p) = self.auth_cache.get(&token) {
            return Ok(p);
        }
        let seen = self.auth_cache.generation();
        let row = self
            .store
            .get_key(&token.key_id)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        if row.revoked_at.is_some() || !token.matches_hash(&row.secret_hash) {
            return Err(ServiceError::Unauthorized);
        }
        let role = Role::parse(&row.role).ok_or(ServiceError::Unauthorized)?;
        let p = Principal {
            key_id: row.id.clone(),
            role,
            org_id: row.org_id,
            services: row.services,
            orgs: row.orgs,
        };
        self.auth_cache.put(seen, row.secret_hash, p.clone());
        Ok(p)
    }

    /// Creates a key (admin only). The returned `key` is shown this once.
    pub async fn create_key(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        input: KeyIn,
    ) -> Result<KeyOut, ServiceError> {
        who.require_admin()?;
        let mut errors = Vec::new();
        match input.role {
            Role::OrgAdmin | Role::Reader => match &input.org_id {
                Some(o) => {
                    if let Err(m) = names::check_scope_id(o) {
                        errors.push(FieldError::new("org_id", m));
                    }
                }
                None => errors.push(FieldError::new(
                    "org_id",
                    "required for org_admin and reader keys",
                )),
            },
            Role::Admin | Role::Publisher => {
                if input.org_id.is_some() {
                    errors.push(FieldError::new(
                        "org_id",
                        "only org_admin and reader keys belong to one org",
                    ));
                }
            }
        }
        if input.role != Role::Publisher && (input.services.is_some() || input.orgs.is_some()) {
            errors.push(FieldError::new(
                "services",
                "services and orgs scope publisher keys only",
            ));
        }
        for s in input.services.iter().flatten() {
            if let Err(m) = names::check_service(s) {
                errors.push(FieldError::new("services", m));
            }
        }
        for o in input.orgs.iter().flatten() {
            if let Err(m) = names::check_scope_id(o) {
                errors.push(FieldError::new("orgs", m));
            }
        }
        if input.label.as_ref().is_some_and(|l| l.len() > 200) {
            errors.push(FieldError::new("label", "at most 200 characters"));
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let token = ApiToken::generate(new_id(IdKind::Key));
        let row = KeyRow {
            id: token.key_id.clone(),
            secret_hash: token.secret_hash(),
            role: input.role.as_str().to_string(),
            org_id: input.org_id,
            services: input.services.unwrap_or_default(),
            orgs: input.orgs.unwrap_or_default(),
            label: input.label,
            created_at: now_rfc3339(),
            created_context: Some(ctx.to_json()),
            revoked_at: None,
            revoked_context: None,
        };
        self.store.insert_key(row.clone()).await?;
        Ok(KeyOut::from_row(row, Some(token.expose())))
    }

    /// Lists keys (admin only), keyset-paginated by id.
    pub async fn list_keys(
        &self,
        who: &Principal,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, ServiceError> {
        who.require_admin()?;
        let after = match cursor {
            Some(c) => Some(
                self.cursors
                    .decode(KEYS_SCOPE, b"", c)
                    .map_err(|_| ServiceError::InvalidCursor)?,
            ),
            None => None,
        };
        let mut rows = self.store.list_keys(after.as_deref(), limit + 1).await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last()
                .map(|r| self.cursors.encode(KEYS_SCOPE, b"", &r.id))
        } else {
            None
        };
        Ok(KeyPage {
            keys: rows
                .into_iter()
                .map(|r| KeyOut::from_row(r, None))
                .collect(),
            next_cursor,
        })
    }

    /// Revokes a key at once (admin only).
    pub async fn revoke_key(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(), ServiceError> {
        who.require_admin()?;
        let revoked = self
            .store
            .revoke_key(id, &now_rfc3339(), &ctx.to_json())
            .await?;
        self.auth_cache.evict(id);
        if revoked {
            Ok(())
        } else {
            Err(ServiceError::NotFound("key"))
        }
    }

    /// On an empty store, creates the first admin key: from `preset` (e.g. `IPM_ADMIN_KEY`) or
    /// freshly minted. Returns the token to print when one was minted.
    pub async fn bootstrap_admin(
        &self,
        preset: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        if self.store.count_keys().await? > 0 {
            return Ok(None);
        }
        let (token, minted) = match preset {
            Some(p) => (
                ApiToken::parse(p).ok_or_else(|| {
                    ServiceError::Validation(vec![FieldError::new(
                        "IPM_ADMIN_KEY",
                        "must look like ipm_key_<26-char ULID>_<16+ chars of [A-Za-z0-9-]>",
                    )])
                })?,
                false,
            ),
            None => (ApiToken::generate(new_id(IdKind::Key)), true),
        };
        self.store
            .insert_key(KeyRow {
                id: token.key_id.clone(),
                secret_hash: token.secret_hash(),
                role: Role::Admin.as_str().into(),
                org_id: None,
                services: vec![],
                orgs: vec![],
                label: Some("bootstrap admin".into()),
                created_at: now_rfc3339(),
                created_context: None,
                revoked_at: None,
                revoked_context: None,
            })
            .await?;
        Ok(minted.then(|| token.expose()))
    }
}
