//! API keys, roles and what each role may do (SPEC §2).
use super::ids::{IdKind, is_id};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A role an API key holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, every org; creates keys.
    Admin,
    /// Manage and read one org's resources.
    OrgAdmin,
    /// Read one org's catalog/CDC/exports/KPIs/alerts; no writes.
    Reader,
    /// Publish events for a set of services and orgs; cannot read.
    Publisher,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::OrgAdmin => "org_admin",
            Role::Reader => "reader",
            Role::Publisher => "publisher",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "org_admin" => Role::OrgAdmin,
            "reader" => Role::Reader,
            "publisher" => Role::Publisher,
            _ => return None,
        })
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (`key_…`).
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// The org of an `org_admin` / `reader` key.
    pub org_id: Option<String>,
    /// Publisher scope: services (empty = all).
    pub services: Vec<String>,
    /// Publisher scope: orgs (empty = all).
    pub orgs: Vec<String>,
}

/// What an authorization check refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The key may not do this (wrong role or another org): 403.
    Forbidden,
}

impl Principal {
    /// May this key read the org's data (CDC, exports, KPIs, alerts, inbox)?
    pub fn can_read_org(&self, org: &str) -> Result<(), Denied> {
        match self.role {
            Role::Admin => Ok(()),
            Role::OrgAdmin | Role::Reader if self.org_id.as_deref() == Some(org) => Ok(()),
            _ => Err(Denied::Forbidden),
        }
    }

    /// May this key manage the org's resources (webhooks, jobs, rules, inbox acks)?
    pub fn can_manage_org(&self, org: &str) -> Result<(), Denied> {
        match self.role {
            Role::Admin => Ok(()),
            Role::OrgAdmin if self.org_id.as_deref() == Some(org) => Ok(()),
            _ => Err(Denied::Forbidden),
        }
    }

    /// May this key publish at all (admin or publisher)?
    pub fn can_publish(&self) -> Result<(), Denied> {
        match self.role {
            Role::Admin | Role::Publisher => Ok(()),
            _ => Err(Denied::Forbidden),
        }
    }

    /// May this key publish an event of `service` for `org`?
    pub fn may_publish(&self, service: &str, org: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Publisher => {
                (self.services.is_empty() || self.services.iter().any(|s| s == service))
                    && (self.orgs.is_empty() || self.orgs.iter().any(|o| o == org))
            }
            _ => false,
        }
    }

    /// Admin only (key management).
    pub fn require_admin(&self) -> Result<(), Denied> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Denied::Forbidden)
        }
    }
}

/// A presented or freshly minted API key: `ipm_<key id>_<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The key id (`key_…`).
    pub key_id: String,
    secret: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}, <redacted>)", self.key_id)
    }
}

impl ApiToken {
    /// Mints a new token with 32 random bytes of secret.
    pub fn generate(key_id: String) -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        Self {
            key_id,
            secret: hex::encode(bytes),
        }
    }

    /// Parses `ipm_key_<ULID>_<secret>`; `None` when it is not of that shape.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("ipm_")?;
        let (id, secret) = rest.rsplit_once('_')?;
        if !is_id(IdKind::Key, id) || secret.len() < 16 || secret.len() > 256 {
            return None;
        }
        if !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        Some(Self {
            key_id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The full token to hand to the user, once.
    pub fn expose(&self) -> String {
        format!("ipm_{}_{}", self.key_id, self.secret)
    }

    /// The hash stored in place of the secret.
    pub fn secret_hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// Constant-time comparison of this token's secret against a stored hash.
    pub fn matches_hash(&self, stored_hex: &str) -> bool {
        self.secret_hash()
            .as_bytes()
            .ct_eq(stored_hex.as_bytes())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::new_id;

    #[test]
    fn tokens_round_trip_and_compare() {
        let t = ApiToken::generate(new_id(IdKind::Key));
        let p = ApiToken::parse(&t.expose()).unwrap();
        assert_eq!(p, t);
        assert!(p.matches_hash(&t.secret_hash()));
        assert!(!ApiToken::generate(t.key_id.clone()).matches_hash(&t.secret_hash()));
        assert!(ApiToken::parse("ipm_key_x_abc").is_none());
        assert!(ApiToken::parse("Bearer nothing").is_none());
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn roles() {
        let p = Principal {
            key_id: "k".into(),
            role: Role::Publisher,
            org_id: None,
            services: vec!["orders".into()],
            orgs: vec![],
        };
        assert!(p.may_publish("orders", "any"));
        assert!(!p.may_publish("billing", "any"));
        assert!(p.can_read_org("any").is_err());
        let r = Principal {
            role: Role::Reader,
            org_id: Some("a".into()),
            ..p
        };
        assert!(r.can_read_org("a").is_ok());
        assert!(r.can_read_org("b").is_err());
        assert!(r.can_manage_org("a").is_err());
    }
}
