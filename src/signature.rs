//! Terra's webhook signature: parsing the `terra-signature` header and checking it.
//!
//! Pure logic, no I/O. The header looks like `t=1723808700,v1=<64 hex>`; the signature is
//! HMAC-SHA256 over `<t as sent>.<raw body>` keyed with the signing secret.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Why a delivery failed verification. The messages are safe to send back to the caller:
/// they never contain the expected signature or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Neither `terra-signature` nor `x-terra-signature` was sent.
    #[error("missing signature header (terra-signature)")]
    MissingHeader,
    /// The header is present but not of the form `t=<unix seconds>,v1=<hex>`.
    #[error("malformed signature header: {0}")]
    MalformedHeader(&'static str),
    /// The signed timestamp is further from now than the configured tolerance.
    #[error("signature timestamp outside the tolerance window")]
    TimestampOutOfTolerance,
    /// No `v1` signature matched any configured secret.
    #[error("no matching signature")]
    NoMatchingSignature,
}

impl SignatureError {
    /// Short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::MalformedHeader(_) => "malformed_header",
            Self::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Self::NoMatchingSignature => "no_matching_signature",
        }
    }
}

/// A parsed signature header: the timestamp exactly as sent and every `v1` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    /// The `t` value as sent; it is part of the signed bytes, so it is never re-formatted.
    pub timestamp_raw: &'a str,
    /// The `t` value as Unix seconds.
    pub timestamp: i64,
    /// Every well-formed `v1` tag, decoded from hex (upper or lower case).
    pub v1: Vec<[u8; TAG_LEN]>,
}

impl<'a> SignatureHeader<'a> {
    /// Parses `t=...,v1=...[,v1=...][,v0=...]`. Items may be surrounded by spaces; schemes
    /// other than `t` and `v1` are ignored. Never panics.
    pub fn parse(value: &'a str) -> Result<Self, SignatureError> {
        if value.trim().is_empty() {
            return Err(SignatureError::MalformedHeader("empty header"));
        }
        let mut timestamp_raw = None;
        let mut v1 = Vec::new();
        let mut saw_v1 = false;
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let Some((key, val)) = item.split_once('=') else {
                return Err(SignatureError::MalformedHeader("item without '='"));
            };
            match key.trim() {
                "t" => {
                    if timestamp_raw.is_some() {
                        return Err(SignatureError::MalformedHeader("more than one t"));
                    }
                    timestamp_raw = Some(val.trim());
                }
                "v1" => {
                    saw_v1 = true;
                    // A tag that is not 64 hex digits can never match; skip it rather than
                    // reject the header, so one garbled scheme entry cannot hide a good one.
                    let mut tag = [0u8; TAG_LEN];
                    if hex::decode_to_slice(val.trim(), &mut tag).is_ok() {
                        v1.push(tag);
                    }
                }
                _ => {}
            }
        }
        let timestamp_raw =
            timestamp_raw.ok_or(SignatureError::MalformedHeader("no t timestamp"))?;
        if timestamp_raw.is_empty() || !timestamp_raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignatureError::MalformedHeader("t is not a Unix timestamp"));
        }
        let timestamp = timestamp_raw
            .parse::<i64>()
            .map_err(|_| SignatureError::MalformedHeader("t is not a Unix timestamp"))?;
        if !saw_v1 {
            return Err(SignatureError::MalformedHeader("no v1 signature"));
        }
        Ok(Self {
            timestamp_raw,
            timestamp,
            v1,
        })
    }
}

/// The signing secrets a delivery may be signed with (one per Terra environment, or old and new
/// during a rotation).
#[derive(Clone)]
pub struct Verifier {
    /// HMAC states already keyed with each secret; cloning one is cheaper than re-keying.
    keyed: Vec<HmacSha256>,
    tolerance_secs: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &format_args!("[{} redacted]", self.keyed.len()))
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier for the given secrets and timestamp tolerance in seconds.
    pub fn new(secrets: &[SecretString], tolerance_secs: u64) -> Self {
        let keyed = secrets
            .iter()
            .filter_map(|s| HmacSha256::new_from_slice(s.expose_secret().as_bytes()).ok())
            .collect();
        Self {
            keyed,
            tolerance_secs: i64::try_from(tolerance_secs).unwrap_or(i64::MAX),
        }
    }

    /// Checks a delivery: `header` is the raw header value (if any), `body` the raw body bytes and
    /// `now` the current Unix time in seconds. Returns the signed timestamp on success.
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<i64, SignatureError> {
        let header = SignatureHeader::parse(header.ok_or(SignatureError::MissingHeader)?)?;
        self.check(&header, body, now)
    }

    /// Checks an already parsed header against `body` at Unix time `now`.
    pub fn check(
        &self,
        header: &SignatureHeader<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<i64, SignatureError> {
        let mut check = self.begin(header, now)?;
        check.update(body);
        check.finish()
    }

    /// Starts checking `header` at Unix time `now` over a body still to come, fed to
    /// [`BodyCheck::update`] as it arrives. A stale timestamp is refused at once.
    pub fn begin(
        &self,
        header: &SignatureHeader<'_>,
        now: i64,
    ) -> Result<BodyCheck, SignatureError> {
        if now.abs_diff(header.timestamp) > self.tolerance_secs.unsigned_abs() {
            return Err(SignatureError::TimestampOutOfTolerance);
        }
        let macs = self
            .keyed
            .iter()
            .map(|keyed| {
                let mut mac = keyed.clone();
                mac.update(header.timestamp_raw.as_bytes());
                mac.update(b".");
                mac
            })
            .collect();
        Ok(BodyCheck {
            macs,
            candidates: header.v1.clone(),
            timestamp: header.timestamp,
        })
    }
}

/// A signature check fed the body piece by piece, so that a large body is hashed while it
/// arrives rather than after.
pub struct BodyCheck {
    /// One HMAC per configured secret, each keyed and fed `<t>.` already.
    macs: Vec<HmacSha256>,
    candidates: Vec<[u8; TAG_LEN]>,
    timestamp: i64,
}

impl std::fmt::Debug for BodyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyCheck")
            .field("secrets", &format_args!("[{} redacted]", self.macs.len()))
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

impl BodyCheck {
    /// Feeds the next bytes of the body.
    pub fn update(&mut self, bytes: &[u8]) {
        for mac in &mut self.macs {
            mac.update(bytes);
        }
    }

    /// The signed timestamp if a `v1` tag matches the body as fed under any secret.
    pub fn finish(self) -> Result<i64, SignatureError> {
        let mut matched = subtle::Choice::from(0u8);
        for mac in self.macs {
            let expected: [u8; TAG_LEN] = mac.finalize().into_bytes().into();
            // Every candidate is compared, without early exit, so timing reveals nothing.
            for candidate in &self.candidates {
                matched |= expected.ct_eq(candidate);
            }
        }
        if bool::from(matched) {
            Ok(self.timestamp)
        } else {
            Err(SignatureError::NoMatchingSignature)
        }
    }
}

fn tag(mut mac: HmacSha256, timestamp_raw: &str, body: &[u8]) -> [u8; TAG_LEN] {
    mac.update(timestamp_raw.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Computes the header value Terra would send for `body` at `timestamp` (used by the `send`
/// command, the load generator and tests).
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let signature = match HmacSha256::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(mac) => hex::encode(tag(mac, &t, body)),
        // HMAC accepts keys of any length, so this branch is unreachable in practice.
        Err(_) => String::new(),
    };
    format!("t={t},v1={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_only_not_real";
    const BODY: &[u8] = br#"{"type":"healthcheck","status":"success"}"#;
    const KNOWN: &str = "1b23d85013c3bd08c5d3ab2ab43ecad4e68f7b84dd0214539bbac382ac399c6d";
    const T: i64 = 1_723_808_700;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn verifier() -> Verifier {
        Verifier::new(&[secret(SECRET)], 300)
    }

    #[test]
    fn known_answer() {
        assert_eq!(sign(&secret(SECRET), T, BODY), format!("t={T},v1={KNOWN}"));
        let header = format!("t={T},v1={KNOWN}");
        assert_eq!(verifier().verify(Some(&header), BODY, T), Ok(T));
    }

    #[test]
    fn several_v1_with_one_correct() {
        let wrong = "0".repeat(64);
        let header = format!("t={T},v1={wrong},v1={KNOWN},v1=abcd");
        assert_eq!(verifier().verify(Some(&header), BODY, T), Ok(T));
        let header = format!("t={T},v1={wrong},v1={}", "f".repeat(64));
        assert_eq!(
            verifier().verify(Some(&header), BODY, T),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn spaces_around_items_are_tolerated() {
        let header = format!("  t={T} ,  v1={KNOWN}  ");
        assert_eq!(verifier().verify(Some(&header), BODY, T), Ok(T));
        let header = format!("t = {T}, v1 = {KNOWN}");
        assert_eq!(verifier().verify(Some(&header), BODY, T), Ok(T));
    }

    #[test]
    fn unknown_schemes_are_ignored() {
        let header = format!("v0=deadbeef,t={T},v2=zzz,v1={KNOWN},foo=bar");
        assert_eq!(verifier().verify(Some(&header), BODY, T), Ok(T));
        // A v0 that would match does not count: only v1 is trusted.
        let header = format!("t={T},v0={KNOWN}");
        assert_eq!(
            verifier().verify(Some(&header), BODY, T),
            Err(SignatureError::MalformedHeader("no v1 signature"))
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let header = format!("t={T},v1={}", KNOWN.to_uppercase());
        assert_eq!(verifier().verify(Some(&header), BODY, T), Ok(T));
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let v = Verifier::new(&[secret("whsec_other")], 300);
        let header = format!("t={T},v1={KNOWN}");
        assert_eq!(
            v.verify(Some(&header), BODY, T),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn any_configured_secret_may_match() {
        let v = Verifier::new(&[secret("whsec_old"), secret(SECRET)], 300);
        let header = format!("t={T},v1={KNOWN}");
        assert_eq!(v.verify(Some(&header), BODY, T), Ok(T));
    }

    #[test]
    fn body_altered_by_one_byte_is_rejected() {
        let header = format!("t={T},v1={KNOWN}");
        let mut body = BODY.to_vec();
        for i in [0, body.len() / 2, body.len() - 1] {
            body[i] ^= 1;
            assert_eq!(
                verifier().verify(Some(&header), &body, T),
                Err(SignatureError::NoMatchingSignature)
            );
            body[i] ^= 1;
        }
        let mut longer = BODY.to_vec();
        longer.push(b'\n');
        assert_eq!(
            verifier().verify(Some(&header), &longer, T),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamp_tolerance_both_directions() {
        let header = format!("t={T},v1={KNOWN}");
        assert_eq!(verifier().verify(Some(&header), BODY, T + 300), Ok(T));
        assert_eq!(verifier().verify(Some(&header), BODY, T - 300), Ok(T));
        assert_eq!(
            verifier().verify(Some(&header), BODY, T + 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verifier().verify(Some(&header), BODY, T - 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn the_timestamp_is_signed_as_sent() {
        // A leading zero changes the signed bytes, so the tag computed over "1723808700" fails.
        let header = format!("t=0{T},v1={KNOWN}");
        assert_eq!(
            verifier().verify(Some(&header), BODY, T),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn malformed_headers() {
        let cases = [
            ("", "empty header"),
            ("   ", "empty header"),
            (&format!("v1={KNOWN}")[..], "no t timestamp"),
            (&format!("t={T}")[..], "no v1 signature"),
            (
                &format!("t=abc,v1={KNOWN}")[..],
                "t is not a Unix timestamp",
            ),
            (&format!("t=-5,v1={KNOWN}")[..], "t is not a Unix timestamp"),
            (&format!("t=,v1={KNOWN}")[..], "t is not a Unix timestamp"),
            (
                &format!("t=99999999999999999999999,v1={KNOWN}")[..],
                "t is not a Unix timestamp",
            ),
            (&format!("t={T},t={T},v1={KNOWN}")[..], "more than one t"),
            ("garbage", "item without '='"),
        ];
        for (header, why) in cases {
            assert_eq!(
                verifier().verify(Some(header), BODY, T),
                Err(SignatureError::MalformedHeader(why)),
                "header {header:?}"
            );
        }
        assert_eq!(
            verifier().verify(None, BODY, T),
            Err(SignatureError::MissingHeader)
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!("{:?}", verifier());
        assert!(!shown.contains(SECRET), "{shown}");
        let text = known_header();
        let header = SignatureHeader::parse(&text).unwrap();
        let shown = format!("{:?}", verifier().begin(&header, T).unwrap());
        assert!(!shown.contains(SECRET) && !shown.contains(KNOWN), "{shown}");
    }

    /// The header of the known answer.
    fn known_header() -> String {
        format!("t={T},v1={KNOWN}")
    }

    #[test]
    fn a_body_fed_in_pieces_checks_as_a_whole_one() {
        let text = known_header();
        let header = SignatureHeader::parse(&text).unwrap();
        let mut check = verifier().begin(&header, T).unwrap();
        for piece in BODY.chunks(7) {
            check.update(piece);
        }
        assert_eq!(check.finish(), Ok(T));

        // One byte missing, or one too many, and it no longer matches.
        let mut check = verifier().begin(&header, T).unwrap();
        check.update(&BODY[..BODY.len() - 1]);
        assert_eq!(check.finish(), Err(SignatureError::NoMatchingSignature));
        let mut check = verifier().begin(&header, T).unwrap();
        check.update(BODY);
        check.update(b" ");
        assert_eq!(check.finish(), Err(SignatureError::NoMatchingSignature));
    }

    #[test]
    fn a_stale_timestamp_is_refused_before_any_body() {
        let text = known_header();
        let header = SignatureHeader::parse(&text).unwrap();
        assert_eq!(
            verifier().begin(&header, T + 301).unwrap_err(),
            SignatureError::TimestampOutOfTolerance
        );
        assert!(verifier().begin(&header, T + 300).is_ok());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".*") {
            let _ = SignatureHeader::parse(&s);
            let _ = verifier().verify(Some(&s), BODY, T);
        }

        #[test]
        fn parser_never_panics_on_header_like_input(
            items in proptest::collection::vec("(t|v1|v0| t|v1 )=[0-9a-fA-F ,=-]{0,70}", 0..6)
        ) {
            let s = items.join(",");
            let _ = verifier().verify(Some(&s), BODY, T);
        }

        #[test]
        fn any_split_of_the_body_checks_as_the_whole(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(0usize..512, 0..6),
            other_secret in any::<bool>(),
        ) {
            let signer = if other_secret { "whsec_some_other_secret_0" } else { SECRET };
            let header = sign(&secret(signer), T, &body);
            let parsed = SignatureHeader::parse(&header).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut check = verifier().begin(&parsed, T).unwrap();
            let mut from = 0;
            for cut in cuts.into_iter().chain([body.len()]) {
                check.update(&body[from..cut]);
                from = cut;
            }
            let expected = if other_secret { Err(SignatureError::NoMatchingSignature) } else { Ok(T) };
            prop_assert_eq!(check.finish(), expected);
        }

        #[test]
        fn sign_then_verify_roundtrips(body in proptest::collection::vec(any::<u8>(), 0..512), t in 0i64..4_000_000_000) {
            let header = sign(&secret(SECRET), t, &body);
            prop_assert_eq!(verifier().verify(Some(&header), &body, t), Ok(t));
        }
    }
}
