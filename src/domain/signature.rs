//! Standard Webhooks signatures (SPEC §6): secrets are `whsec_` + base64 of 32 random bytes; the
//! signature is `v1,<base64 HMAC-SHA256(secret_bytes, "{id}.{timestamp}.{body}")>`.
use super::sealing::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not `whsec_` + base64")]
    BadSecret,
    #[error("the webhook-timestamp header is not Unix seconds")]
    BadTimestamp,
    #[error("the timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// A fresh signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// The key bytes of a `whsec_…` secret (the prefix is optional, as verifier libraries accept).
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, VerifyError> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(b64).map_err(|_| VerifyError::BadSecret)
}

/// `v1,<base64 signature>` of `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body)))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails.
    let mut m = match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Verifies a delivery as a receiver would: one of the space-separated `v1,…` signatures must
/// match (constant-time) and the timestamp must be within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let key = secret_bytes(secret)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now_secs - ts).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let expected = mac(&key, id, ts, body);
    let ok = signatures.split_whitespace().any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| STANDARD.decode(b).ok())
            .is_some_and(|got| bool::from(got.ct_eq(&expected)))
    });
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_reference_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = secret_bytes(secret).unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(
            verify(
                secret,
                id,
                "1614265330",
                &format!("v1,bm9wZQ== {sig}"),
                body,
                1614265330,
                300
            )
            .is_ok()
        );
        assert_eq!(
            verify(secret, id, "1614265330", &sig, b"{}", 1614265330, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, id, "1614265330", &sig, body, 1614266330, 300),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn generated_secrets_have_32_bytes() {
        let s = generate_secret();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(secret_bytes(s.expose()).unwrap().len(), 32);
    }
}
