//! Signing secrets at rest: XChaCha20-Poly1305 with a 32-byte key from config
//! (`webhooks.encryption_key`, base64) or a 0600 key file in the data dir. The webhook id is the
//! associated data, so a sealed secret cannot be moved to another webhook's row.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The secret itself: call only where it must leave the process (the one create response,
    /// signing).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The last four characters, safe to show.
    pub fn last4(&self) -> String {
        let n = self.0.chars().count();
        self.0.chars().skip(n.saturating_sub(4)).collect()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the encryption key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("a sealed secret failed to decrypt (wrong key or corrupted row)")]
    Open,
}

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    /// A sealer over 32 key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&Key::from(key)),
        }
    }

    /// A sealer from base64 text.
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| SealError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::new(key))
    }

    /// A fresh random key as base64 (for the key file).
    pub fn generate_key() -> String {
        let mut k = [0u8; 32];
        rand::fill(&mut k[..]);
        STANDARD.encode(k)
    }

    /// nonce (24 bytes) ‖ ciphertext+tag, bound to `aad`.
    pub fn seal(&self, secret: &Secret, aad: &str) -> Result<Vec<u8>, SealError> {
        let mut n = [0u8; 24];
        rand::fill(&mut n[..]);
        let nonce = XNonce::from(n);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        let mut out = n.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`Self::seal`] produced.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Secret, SealError> {
        if sealed.len() < 24 {
            return Err(SealError::Open);
        }
        let (n, ct) = sealed.split_at(24);
        let n: [u8; 24] = n.try_into().map_err(|_| SealError::Open)?;
        let pt = self
            .cipher
            .decrypt(
                &XNonce::from(n),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(pt)
            .map(Secret::new)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_to_the_row() {
        let s = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let secret = Secret::new("whsec_abcdefgh".into());
        let sealed = s.seal(&secret, "whk_1").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"whsec"));
        assert_eq!(s.open(&sealed, "whk_1").unwrap(), secret);
        assert_eq!(s.open(&sealed, "whk_2"), Err(SealError::Open));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.last4(), "efgh");
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}
