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
        Self::from_wire(s).ok_or_else(|| format!("unknown sign method {s:?}"))
    }
}

impl std::fmt::Display for SignMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// The string to sign: sorted `name value` pairs without `sign`, then the batch body if any.
pub fn string_to_sign(params: &ParamSet, body: Option<&str>) -> String {
    let mut pairs: Vec<(&str, &str)> = params.iter().filter(|(n, _)| *n != "sign").collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
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

/// Signs a canonical string: uppercase hexadecimal digest.
pub fn sign_string(method: SignMethod, secret: &str, canonical: &str) -> String {
    let digest: Vec<u8> = match method {
        SignMethod::Md5 => {
            let mut h = Md5::new();
            h.update(secret.as_bytes());
            h.update(canonical.as_bytes());
            h.update(secret.as_bytes());
            h.finalize().to_vec()
        }
        SignMethod::Hmac => {
            let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignMethod::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    hex::encode_upper(digest)
}

/// Signs a parameter set (the `sign` parameter itself, if present, is ignored).
pub fn sign_params(method: SignMethod, secret: &str, params: &ParamSet) -> String {
    sign_string(method, secret, &string_to_sign(params, None))
}

/// Compares a received signature with the expected one in constant time, ignoring hex case.
pub fn signatures_match(expected_upper: &str, received: &str) -> bool {
    let received = received.to_ascii_uppercase();
    expected_upper.as_bytes().ct_eq(received.as_bytes()).into()
}

/// Verifies the `sign` of a parameter set (plus an optional batch body).
pub fn verify(
    method: SignMethod,
    secret: &str,
    params: &ParamSet,
    body: Option<&str>,
    received: &str,
) -> bool {
    let expected = sign_string(method, secret, &string_to_sign(params, body));
    signatures_match(&expected, received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn case_insensitive_match() {
        assert!(signatures_match("ABCDEF", "abcdef"));
        assert!(!signatures_match("ABCDEF", "ABCDE"));
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
            prop_assert!(verify(method, &secret, &set, None, &sig));
            prop_assert!(verify(method, &secret, &set, None, &sig.to_lowercase()));
            set.set("sign", sig.clone());
            prop_assert!(verify(method, &secret, &set, None, &sig));
            let other = format!("{secret}x");
            prop_assert!(!verify(method, &other, &set, None, &sig));
        }
    }
}
