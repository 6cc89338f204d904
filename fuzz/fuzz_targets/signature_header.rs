//! `SignatureHeader::parse` on any header value, and `sign` → `parse` → `verify` on any body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use terra_sink::{sign, SignatureHeader, Verifier};

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input: a header value, then a body to sign.
    let (split, rest) = data
        .split_first()
        .map_or((0, data), |(s, r)| (*s as usize, r));
    let (header, body) = rest.split_at(split.min(rest.len()));
    if let Ok(value) = std::str::from_utf8(header) {
        if let Ok(parsed) = SignatureHeader::parse(value) {
            // `t` is kept exactly as sent: part of the input, all digits.
            assert!(value.contains(parsed.timestamp_raw));
            assert!(parsed.timestamp_raw.bytes().all(|b| b.is_ascii_digit()));
            assert!(parsed.timestamp >= 0);
        }
    }
    // Whatever the body, what `sign` produces parses and verifies, and only with its secret.
    let secret = SecretString::from("whsec_fuzz".to_owned());
    let t = 1_700_000_000 + i64::from(split as u8);
    let signed = sign(&secret, t, body);
    let parsed = SignatureHeader::parse(&signed).expect("sign's output parses");
    assert_eq!(parsed.timestamp, t);
    let verifier = Verifier::new(&[secret], 300);
    assert!(verifier.check(&parsed, body, t).is_ok());
    let other = Verifier::new(&[SecretString::from("whsec_other".to_owned())], 300);
    assert!(other.check(&parsed, body, t).is_err());
});
