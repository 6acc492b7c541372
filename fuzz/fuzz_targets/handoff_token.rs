//! Token hand-off files (common/src/handoff.rs): written by the sidecar, read by the module on
//! every change. `handoff::read` is the permission check plus this JSON parse.
//!
//! Properties: parsing any file content fails cleanly or gives a token that serialises and
//! parses back to itself; a token's Debug text is the same whatever its access token (the
//! token never reaches a log through `{:?}`); every token the sidecar can build round-trips.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use natterbox_common::handoff::TokenFile;

#[derive(Arbitrary, Debug)]
struct AnyToken {
    org: String,
    access_token: String,
    instance_url: String,
    issued_at_ms: u64,
    generation: u64,
}

fn check(token: &TokenFile) {
    let body = serde_json::to_vec(token).unwrap();
    let again: TokenFile = serde_json::from_slice(&body).expect("a written token reads back");
    assert!(again == *token, "round trip changed the token");
    let mut other = token.clone();
    other.access_token = format!("{}x", token.access_token);
    assert_eq!(
        format!("{token:?}"),
        format!("{other:?}"),
        "Debug depends on the access token"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = serde_json::from_slice::<TokenFile>(data) {
        check(&token);
    }
    if let Ok(any) = AnyToken::arbitrary_take_rest(Unstructured::new(data)) {
        check(&TokenFile {
            org: any.org,
            access_token: any.access_token,
            instance_url: any.instance_url,
            issued_at_ms: any.issued_at_ms,
            generation: any.generation,
        });
    }
});
