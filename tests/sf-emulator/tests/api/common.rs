//! Helpers: start an emulator, sign JWTs with the test key, get tokens.

use base64::Engine;
use serde_json::{json, Value};
use sf_emulator::{Emulator, EmulatorOptions};

pub const JWT_CLIENT: &str = "3MVG9Emu.JWT.ClientId.natterbox";
pub const JWT_SECRET: &str = "jwt-app-secret";
pub const CC_CLIENT: &str = "3MVG9Emu.CC.ClientId.natterbox";
pub const CC_SECRET: &str = "cc-app-secret";
pub const ROTATING_CLIENT: &str = "3MVG9Emu.Rotating.ClientId";
pub const INTEGRATION: &str = "integration@acme.example";
pub const REFRESH_TOKEN: &str = "5Aep861Emu.Refresh.Integration.0001";
pub const TEST_KEY: &str = include_str!("../../fixtures/test-jwt-private-key.pk8.pem");
pub const OTHER_KEY: &str = include_str!("../../fixtures/other-private-key.pk8.pem");
pub const V: &str = "v66.0";

pub async fn start() -> Emulator {
    start_with(|_| {}).await
}

pub async fn start_with(f: impl FnOnce(&mut EmulatorOptions)) -> Emulator {
    let mut o = EmulatorOptions::default_seed();
    f(&mut o);
    Emulator::start(o).await.expect("emulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// An RS256 JWT over `claims`, signed with a PKCS#8 PEM key.
pub fn sign_jwt(claims: &Value, key_pem: &str) -> String {
    let der: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .expect("pem");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("pkcs8 key");
    let msg = format!(
        "{}.{}",
        b64url(br#"{"alg":"RS256"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{msg}.{}", b64url(&sig))
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn claims(sub: &str) -> Value {
    json!({"iss": JWT_CLIENT, "sub": sub, "aud": "https://login.salesforce.com", "exp": now_s() + 180})
}

pub async fn token_request(emu: &Emulator, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}/services/oauth2/token", emu.login_url()))
        .form(form)
        .send()
        .await
        .expect("token request")
}

/// A fresh access token for the integration user (JWT bearer).
pub async fn token(emu: &Emulator) -> String {
    let jwt = sign_jwt(&claims(INTEGRATION), TEST_KEY);
    let r = token_request(
        emu,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &jwt),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// Authenticated GET on the instance; returns (status, headers, body).
pub async fn get(
    emu: &Emulator,
    tok: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .get(format!("{}{path}", emu.instance_url()))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn send(
    emu: &Emulator,
    tok: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", emu.instance_url()))
        .bearer_auth(tok);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    )
}

pub fn q(soql: &str) -> String {
    let enc: String = url_encode(soql);
    format!("/services/data/{V}/query?q={enc}")
}

pub fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs a query, asserting success; returns the body.
pub async fn query(emu: &Emulator, tok: &str, soql: &str) -> Value {
    let (status, _, body) = get(emu, tok, &q(soql)).await;
    assert_eq!(status, 200, "{soql}: {body}");
    body
}

/// Runs a query expected to fail; returns (status, errorCode, message).
pub async fn query_err(emu: &Emulator, tok: &str, soql: &str) -> (u16, String, String) {
    let (status, _, body) = get(emu, tok, &q(soql)).await;
    let e = &body[0];
    (
        status,
        e["errorCode"].as_str().unwrap_or("").into(),
        e["message"].as_str().unwrap_or("").into(),
    )
}

pub fn names(body: &Value) -> Vec<String> {
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap_or("").to_string())
        .collect()
}
