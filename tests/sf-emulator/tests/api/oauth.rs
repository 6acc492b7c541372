use crate::common::*;
use base64::Engine;
use serde_json::{json, Value};
use sf_emulator::FaultRule;
use std::time::Duration;

const JWT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

async fn jwt_result(emu: &sf_emulator::Emulator, claims: &Value, key: &str) -> (u16, Value) {
    let a = sign_jwt(claims, key);
    let r = token_request(emu, &[("grant_type", JWT), ("assertion", &a)]).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The keys of a token response, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// `signature` = base64(HMAC-SHA256(client secret, id + issued_at)); `issued_at` in ms as text.
fn check_signature(v: &Value, secret: &str) {
    let issued = v["issued_at"].as_str().expect("issued_at is a string");
    assert!(
        issued.parse::<u64>().unwrap() > 1_700_000_000_000,
        "milliseconds"
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let id = v["id"].as_str().unwrap();
    let want = ring::hmac::sign(&key, format!("{id}{issued}").as_bytes());
    assert_eq!(
        v["signature"],
        base64::engine::general_purpose::STANDARD.encode(want.as_ref())
    );
}

#[tokio::test]
async fn jwt_bearer_success_has_salesforce_fields() {
    let emu = start().await;
    let (status, v) = jwt_result(&emu, &claims(INTEGRATION), TEST_KEY).await;
    assert_eq!(status, 200, "{v}");
    let tok = v["access_token"].as_str().unwrap();
    assert!(tok.starts_with(&format!("{}!", &emu.org_id()[..15])));
    assert_eq!(v["instance_url"], emu.instance_url());
    assert_ne!(
        emu.instance_url(),
        emu.login_url(),
        "instance on a different origin"
    );
    assert!(emu.instance_url().contains("localhost"));
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "api refresh_token");
    // Salesforce Help, "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration": exactly
    // these fields; no issued_at, no signature, no refresh_token, no expires_in.
    assert_eq!(
        keys(&v),
        ["access_token", "scope", "instance_url", "id", "token_type"]
    );
    let id = v["id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("{}/id/{}/005", emu.login_url(), emu.org_id())),
        "{id}"
    );
    let (s, _, _) = get(&emu, tok, &format!("/services/data/{V}/limits")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn jwt_errors_use_salesforce_descriptions() {
    let emu = start().await;
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        (
            json!({"iss": JWT_CLIENT, "sub": INTEGRATION, "aud": "https://acme.my.salesforce.com", "exp": now_s() + 60}),
            TEST_KEY,
            "invalid_grant",
            "audience is invalid",
        ),
        (
            claims(INTEGRATION),
            OTHER_KEY,
            "invalid_grant",
            "invalid assertion",
        ),
        (
            json!({"iss": JWT_CLIENT, "sub": INTEGRATION, "aud": "https://login.salesforce.com", "exp": now_s() - 10}),
            TEST_KEY,
            "invalid_grant",
            "expired authorization code",
        ),
        (
            json!({"iss": "nope", "sub": INTEGRATION, "aud": "https://login.salesforce.com", "exp": now_s() + 60}),
            TEST_KEY,
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            claims("alan.turing@acme.example"),
            TEST_KEY,
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        (
            claims("nobody@acme.example"),
            TEST_KEY,
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        (
            claims("former.employee@acme.example"),
            TEST_KEY,
            "invalid_grant",
            "inactive user",
        ),
        (
            json!({"iss": JWT_CLIENT, "sub": INTEGRATION, "aud": "https://login.salesforce.com", "exp": now_s() + 3600}),
            TEST_KEY,
            "invalid_grant",
            "invalid assertion",
        ),
    ];
    for (c, key, error, desc) in cases {
        let (status, v) = jwt_result(&emu, &c, key).await;
        assert_eq!(status, 400, "{c}");
        assert_eq!(v, json!({"error": error, "error_description": desc}), "{c}");
    }
    // test.salesforce.com audience, exp as a string (simple-salesforce style)
    let c = json!({"iss": JWT_CLIENT, "sub": INTEGRATION, "aud": "https://test.salesforce.com", "exp": (now_s() + 120).to_string()});
    assert_eq!(jwt_result(&emu, &c, TEST_KEY).await.0, 200);
    // garbage assertion
    let r = token_request(&emu, &[("grant_type", JWT), ("assertion", "a.b")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_description"],
        "invalid assertion"
    );
}

#[tokio::test]
async fn unsupported_grant_type() {
    let emu = start().await;
    let r = token_request(&emu, &[("grant_type", "authorization_code"), ("code", "x")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"})
    );
}

#[tokio::test]
async fn refresh_token_grant_and_rotation() {
    let emu = start().await;
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", REFRESH_TOKEN),
            ("client_id", JWT_CLIENT),
            ("client_secret", JWT_SECRET),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // No rotation: the client-credentials set of fields, no new refresh token.
    assert_eq!(
        keys(&v),
        [
            "access_token",
            "signature",
            "scope",
            "instance_url",
            "id",
            "token_type",
            "issued_at"
        ]
    );
    check_signature(&v, JWT_SECRET);
    // wrong refresh token
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "nope"),
            ("client_id", JWT_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_description"],
        "expired access/refresh token"
    );
    // wrong secret
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", REFRESH_TOKEN),
            ("client_id", JWT_CLIENT),
            ("client_secret", "bad"),
        ],
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // rotation: new refresh token returned, old one dead
    let old = "5Aep861Emu.Refresh.Rotating.0001";
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", old),
            ("client_id", ROTATING_CLIENT),
        ],
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        keys(&v),
        [
            "access_token",
            "signature",
            "scope",
            "instance_url",
            "id",
            "token_type",
            "issued_at",
            "refresh_token"
        ]
    );
    let new = v["refresh_token"]
        .as_str()
        .expect("rotated refresh token")
        .to_string();
    assert_ne!(new, old);
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", old),
            ("client_id", ROTATING_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &new),
            ("client_id", ROTATING_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn client_credentials_only_on_my_domain_host() {
    let emu = start().await;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CC_CLIENT}:{CC_SECRET}"));
    let post = |base: String| {
        client()
            .post(format!("{base}/services/oauth2/token"))
            .header("Authorization", format!("Basic {basic}"))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let r = post(emu.login_url()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_description"],
        "request not supported on this domain"
    );
    let r = post(emu.instance_url()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().contains("/005"));
    assert_eq!(
        keys(&v),
        [
            "access_token",
            "signature",
            "scope",
            "instance_url",
            "id",
            "token_type",
            "issued_at"
        ]
    );
    check_signature(&v, CC_SECRET);
    // body credentials, wrong secret
    let r = client()
        .post(format!("{}/services/oauth2/token", emu.instance_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CC_CLIENT),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client", "error_description": "invalid client credentials"})
    );
    // grant not enabled for the JWT app
    let r = client()
        .post(format!("{}/services/oauth2/token", emu.instance_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", JWT_CLIENT),
            ("client_secret", JWT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

#[tokio::test]
async fn password_grant() {
    let emu = start().await;
    let ok = token_request(
        &emu,
        &[
            ("grant_type", "password"),
            ("client_id", JWT_CLIENT),
            ("client_secret", JWT_SECRET),
            ("username", INTEGRATION),
            ("password", "Passw0rd!EMUTOKEN"),
        ],
    )
    .await;
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!(
        keys(&v),
        [
            "access_token",
            "instance_url",
            "id",
            "token_type",
            "issued_at",
            "signature"
        ]
    );
    check_signature(&v, JWT_SECRET);
    let bad = token_request(
        &emu,
        &[
            ("grant_type", "password"),
            ("client_id", JWT_CLIENT),
            ("client_secret", JWT_SECRET),
            ("username", INTEGRATION),
            ("password", "Passw0rd!"),
        ],
    )
    .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({"error": "invalid_grant", "error_description": "authentication failure"})
    );
}

#[tokio::test]
async fn revoke_and_introspect() {
    let emu = start().await;
    let tok = token(&emu).await;
    let intro = |t: String| {
        client()
            .post(format!("{}/services/oauth2/introspect", emu.login_url()))
            .form(&[
                ("token", t.as_str()),
                ("client_id", JWT_CLIENT),
                ("client_secret", JWT_SECRET),
                ("token_type_hint", "access_token"),
            ])
            .send()
    };
    let v: Value = intro(tok.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["username"], INTEGRATION);
    assert_eq!(v["token_type"], "access_token");
    assert!(v["sub"].as_str().unwrap().contains(&emu.org_id()));
    let r = client()
        .post(format!("{}/services/oauth2/revoke", emu.login_url()))
        .form(&[("token", tok.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let v: Value = intro(tok.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"active": false}));
    let (s, _, body) = get(&emu, &tok, &format!("/services/data/{V}/limits")).await;
    assert_eq!(s, 401);
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let r = client()
        .post(format!("{}/services/oauth2/revoke", emu.login_url()))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // revoking a refresh token kills the access tokens issued from it
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", REFRESH_TOKEN),
            ("client_id", JWT_CLIENT),
        ],
    )
    .await;
    let at = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .get(format!(
            "{}/services/oauth2/revoke?token={REFRESH_TOKEN}",
            emu.login_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&emu, &at, &format!("/services/data/{V}/limits"))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn sessions_expire_after_inactivity_and_calls_extend_them() {
    let emu = start_with(|o| o.session_timeout = Duration::from_millis(600)).await;
    let tok = token(&emu).await;
    let path = format!("/services/data/{V}/limits");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            get(&emu, &tok, &path).await.0,
            200,
            "each call pushes the timeout back"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(get(&emu, &tok, &path).await.0, 401);
}

#[tokio::test]
async fn admin_expire_sessions_and_dead_refresh_mode() {
    let emu = start().await;
    let tok = token(&emu).await;
    let path = format!("/services/data/{V}/limits");
    assert_eq!(emu.admin().expire_sessions(), 1);
    assert_eq!(get(&emu, &tok, &path).await.0, 401);
    emu.admin().add_fault(FaultRule {
        path_prefix: "/services/oauth2/token".into(),
        dead_tokens: true,
        ..Default::default()
    });
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", REFRESH_TOKEN),
            ("client_id", JWT_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let dead = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&emu, &dead, &path).await.0,
        401,
        "refreshed token is already dead"
    );
    emu.admin().clear_faults();
    let fresh = token(&emu).await;
    assert_eq!(get(&emu, &fresh, &path).await.0, 200);
}

#[tokio::test]
async fn userinfo_and_identity() {
    let emu = start().await;
    let tok = token(&emu).await;
    let r = client()
        .get(format!("{}/services/oauth2/userinfo", emu.login_url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["preferred_username"], INTEGRATION);
    assert_eq!(v["organization_id"], emu.org_id());
    let r = client()
        .get(format!("{}/services/oauth2/userinfo", emu.login_url()))
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn token_without_api_scope_is_refused_by_rest() {
    let emu = start_with(|o| {
        let app = o
            .seed
            .connected_apps
            .iter_mut()
            .find(|a| a.client_id == CC_CLIENT)
            .unwrap();
        app.scope = "refresh_token".into();
    })
    .await;
    let r = client()
        .post(format!("{}/services/oauth2/token", emu.instance_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CC_CLIENT),
            ("client_secret", CC_SECRET),
        ])
        .send()
        .await
        .unwrap();
    let tok = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, b) = get(&emu, &tok, &format!("/services/data/{V}/limits")).await;
    assert_eq!(s, 401);
    assert_eq!(
        b,
        json!([{"message": "This session is not valid for use with the REST API", "errorCode": "INVALID_SESSION_ID"}])
    );
}

#[tokio::test]
async fn sessions_can_expire_after_n_calls() {
    let emu = start().await;
    emu.admin().set_session_max_calls(Some(2));
    let tok = token(&emu).await;
    let path = format!("/services/data/{V}/limits");
    assert_eq!(get(&emu, &tok, &path).await.0, 200);
    assert_eq!(get(&emu, &tok, &path).await.0, 200);
    assert_eq!(get(&emu, &tok, &path).await.0, 401);
    // rotation keeps access tokens issued before it alive
    emu.admin().set_session_max_calls(None);
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "5Aep861Emu.Refresh.Rotating.0001"),
            ("client_id", ROTATING_CLIENT),
        ],
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let first = v["access_token"].as_str().unwrap().to_string();
    let next = v["refresh_token"].as_str().unwrap().to_string();
    let r = token_request(
        &emu,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &next),
            ("client_id", ROTATING_CLIENT),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(get(&emu, &first, &path).await.0, 200);
}
