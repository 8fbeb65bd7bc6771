//! Opaque keyset cursors, signed with HMAC-SHA256 and bound to the list and filters they were
//! issued for. A cursor carries a position (e.g. a sequence number); tampering, reuse with other
//! filters, or reuse on another list all fail verification.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this server issued (malformed, tampered, or issued for other filters).
    #[error("the cursor is malformed, was tampered with, or was issued for other filters")]
    Invalid,
}

/// Signs and verifies cursors with a server-held key.
#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

impl CursorCodec {
    /// A codec with the given 32-byte key.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, scope: &str, binding: &[u8], position: &[u8]) -> HmacSha256 {
        // A fixed-size key always fits HMAC; new_from_slice cannot fail for it.
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(scope.as_bytes());
        m.update(&[0]);
        m.update(binding);
        m.update(&[0]);
        m.update(position);
        m
    }

    /// Encodes `position` for the list `scope` under the filter `binding`.
    pub fn encode(&self, scope: &str, binding: &[u8], position: &str) -> String {
        let tag = self
            .mac(scope, binding, position.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(position),
            URL_SAFE_NO_PAD.encode(&tag[..16])
        )
    }

    /// Verifies a cursor and returns its position.
    pub fn decode(&self, scope: &str, binding: &[u8], token: &str) -> Result<String, CursorError> {
        if token.len() > 512 {
            return Err(CursorError::Invalid);
        }
        let (pos, tag) = token.split_once('.').ok_or(CursorError::Invalid)?;
        let pos = URL_SAFE_NO_PAD
            .decode(pos)
            .map_err(|_| CursorError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Invalid)?;
        if tag.len() != 16 {
            return Err(CursorError::Invalid);
        }
        self.mac(scope, binding, &pos)
            .verify_truncated_left(&tag)
            .map_err(|_| CursorError::Invalid)?;
        String::from_utf8(pos).map_err(|_| CursorError::Invalid)
    }

    /// Encodes a sequence-number position.
    pub fn encode_seq(&self, scope: &str, binding: &[u8], seq: i64) -> String {
        self.encode(scope, binding, &seq.to_string())
    }

    /// Decodes a sequence-number position.
    pub fn decode_seq(&self, scope: &str, binding: &[u8], token: &str) -> Result<i64, CursorError> {
        let p = self.decode(scope, binding, token)?;
        p.parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or(CursorError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = CursorCodec::new([7; 32]);
        let t = c.encode_seq("cdc:org_a", b"f1", 42);
        assert_eq!(c.decode_seq("cdc:org_a", b"f1", &t), Ok(42));
        assert!(c.decode_seq("cdc:org_a", b"f2", &t).is_err());
        assert!(c.decode_seq("cdc:org_b", b"f1", &t).is_err());
        let mut bad = t.clone();
        bad.replace_range(0..1, if t.starts_with('A') { "B" } else { "A" });
        assert!(c.decode_seq("cdc:org_a", b"f1", &bad).is_err());
        assert!(c.decode_seq("cdc:org_a", b"f1", "garbage").is_err());
        assert!(c.decode_seq("cdc:org_a", b"f1", "").is_err());
        let other = CursorCodec::new([8; 32]);
        assert!(other.decode_seq("cdc:org_a", b"f1", &t).is_err());
    }
}
