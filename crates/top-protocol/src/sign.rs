//! The TOP signature: the canonical string and the `md5`, `hmac` and `hmac-sha256` signers.
//!
//! The canonical string is every text parameter except `sign`, sorted by name in byte order, as
//! `name1value1name2value2…` with empty values included (the Python, Node and Go SDKs sign them),
//! followed, for batch calls, by the raw body. Verification compares uppercase hex in constant
//! time, accepting either case from the client.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::params::ParamSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignMethod {
    /// `MD5(secret + S + secret)`.
    Md5,
    /// `HMAC-MD5(secret, S)`.
    Hmac,
    /// `HMAC-SHA256(secret, S)`.
    HmacSha256,
}

impl SignMethod {
    pub const ALL: [SignMethod; 3] = [SignMethod::Md5, SignMethod::Hmac, SignMethod::HmacSha256];

    /// Parses the wire name; `None` for an unknown method.
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "md5" => Some(Self::Md5),
            "hmac" => Some(Self::Hmac),
            "hmac-sha256" => Some(Self::HmacSha256),
            _ => None,
        }
    }

    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Hmac => "hmac",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

impl std::str::FromStr for SignMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_wire(s)
            .ok_or_else(|| format!("unknown sign method {s:?}; md5, hmac or hmac-sha256"))
    }
}

impl std::fmt::Display for SignMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// The signed pairs: every text parameter but `sign`, sorted by name in byte order.
fn signed_pairs(params: &ParamSet) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = params.iter().filter(|(n, _)| *n != "sign").collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    pairs
}

/// The string to sign: sorted `name value` pairs without `sign`, then the batch body if any.
pub fn string_to_sign(params: &ParamSet, body: Option<&str>) -> String {
    let pairs = signed_pairs(params);
    let len =
        pairs.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() + body.map_or(0, str::len);
    let mut s = String::with_capacity(len);
    for (n, v) in pairs {
        s.push_str(n);
        s.push_str(v);
    }
    if let Some(body) = body {
        s.push_str(body);
    }
    s
}

/// The longest digest of the three signers (HMAC-SHA256), in uppercase hexadecimal.
const MAX_HEX: usize = 64;

/// A signer being fed the canonical string piece by piece, so that verifying a request needs
/// neither the canonical string nor the hex digest as heap strings.
enum Signer<'s> {
    Md5 { hash: Md5, secret: &'s [u8] },
    Hmac(Hmac<Md5>),
    HmacSha256(Hmac<Sha256>),
}

impl<'s> Signer<'s> {
    fn new(method: SignMethod, secret: &'s str) -> Self {
        let key = secret.as_bytes();
        match method {
            SignMethod::Md5 => {
                let mut hash = Md5::new();
                hash.update(key);
                Self::Md5 { hash, secret: key }
            }
            SignMethod::Hmac => Self::Hmac(
                <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length"),
            ),
            SignMethod::HmacSha256 => Self::HmacSha256(
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length"),
            ),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Md5 { hash, .. } => hash.update(bytes),
            Self::Hmac(mac) => mac.update(bytes),
            Self::HmacSha256(mac) => mac.update(bytes),
        }
    }

    /// The signature as uppercase hexadecimal in `out`; returns its length.
    fn finish_hex(self, out: &mut [u8; MAX_HEX]) -> usize {
        match self {
            Self::Md5 { mut hash, secret } => {
                hash.update(secret);
                upper_hex(&hash.finalize(), out)
            }
            Self::Hmac(mac) => upper_hex(&mac.finalize().into_bytes(), out),
            Self::HmacSha256(mac) => upper_hex(&mac.finalize().into_bytes(), out),
        }
    }
}

fn upper_hex(digest: &[u8], out: &mut [u8; MAX_HEX]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
    2 * digest.len()
}

/// Signs a canonical string: uppercase hexadecimal digest.
pub fn sign_string(method: SignMethod, secret: &str, canonical: &str) -> String {
    let mut signer = Signer::new(method, secret);
    signer.update(canonical.as_bytes());
    let mut hex = [0u8; MAX_HEX];
    let len = signer.finish_hex(&mut hex);
    String::from_utf8_lossy(&hex[..len]).into_owned()
}

/// Signs a parameter set (the `sign` parameter itself, if present, is ignored).
pub fn sign_params(method: SignMethod, secret: &str, params: &ParamSet) -> String {
    sign_string(method, secret, &string_to_sign(params, None))
}

/// Compares a received signature with the expected one in constant time, ignoring hex case.
pub fn signatures_match(expected_upper: &str, received: &str) -> bool {
    hex_match(expected_upper.as_bytes(), received)
}

/// [`signatures_match`] over bytes: the received signature is uppercased into a stack buffer
/// (a signature of another length than the expected one fails at once: lengths are public).
fn hex_match(expected_upper: &[u8], received: &str) -> bool {
    let received = received.as_bytes();
    if received.len() != expected_upper.len() || received.len() > MAX_HEX {
        return false;
    }
    let mut upper = [0u8; MAX_HEX];
    for (out, byte) in upper.iter_mut().zip(received) {
        *out = byte.to_ascii_uppercase();
    }
    expected_upper.ct_eq(&upper[..received.len()]).into()
}

/// Verifies the `sign` of a parameter set (plus an optional batch body). The canonical string
/// of [`string_to_sign`] is fed to the signer pair by pair rather than built.
pub fn verify(
    method: SignMethod,
    secret: &str,
    params: &ParamSet,
    body: Option<&str>,
    received: &str,
) -> bool {
    let mut signer = Signer::new(method, secret);
    for (name, value) in signed_pairs(params) {
        signer.update(name.as_bytes());
        signer.update(value.as_bytes());
    }
    if let Some(body) = body {
        signer.update(body.as_bytes());
    }
    let mut expected = [0u8; MAX_HEX];
    let len = signer.finish_hex(&mut expected);
    hex_match(&expected[..len], received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The digest as the RustCrypto crates give it for the whole canonical string at once.
    fn reference_digest(method: SignMethod, secret: &str, canonical: &str) -> Vec<u8> {
        match method {
            SignMethod::Md5 => Md5::digest(format!("{secret}{canonical}{secret}")).to_vec(),
            SignMethod::Hmac => {
                let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(canonical.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            SignMethod::HmacSha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(canonical.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    #[test]
    fn case_insensitive_match() {
        assert!(signatures_match("ABCDEF", "abcdef"));
        assert!(!signatures_match("ABCDEF", "ABCDE"));
        assert!(!signatures_match("ABCDEF", "ABCDEG"));
        assert!(!signatures_match("ABCDEF", &"A".repeat(200)));
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            params in proptest::collection::btree_map("[a-z_]{1,12}|\\PC{1,6}", "\\PC{0,16}", 0..12),
            secret in "\\PC{0,20}",
            method in prop_oneof![Just(SignMethod::Md5), Just(SignMethod::Hmac), Just(SignMethod::HmacSha256)],
            reverse in any::<bool>(),
        ) {
            let mut set = ParamSet::new();
            let mut pairs: Vec<_> = params.into_iter().filter(|(n, _)| n != "sign").collect();
            if reverse { pairs.reverse(); }
            for (n, v) in &pairs { set.insert(n.clone(), v.clone()); }
            let sig = sign_params(method, &secret, &set);
            prop_assert_eq!(&sig, &hex::encode_upper(reference_digest(method, &secret, &string_to_sign(&set, None))));
            prop_assert!(verify(method, &secret, &set, None, &sig));
            prop_assert!(verify(method, &secret, &set, None, &sig.to_lowercase()));
            set.set("sign", sig.clone());
            prop_assert!(verify(method, &secret, &set, None, &sig));
            let other = format!("{secret}x");
            prop_assert!(!verify(method, &other, &set, None, &sig));
        }
    }
}
