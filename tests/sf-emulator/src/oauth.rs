//! `/services/oauth2/*`: token (JWT bearer, refresh token, client credentials, password),
//! revoke, introspect, userinfo; and the identity URL `/id/<org>/<user>`.

use crate::http::{Request, Response};
use crate::sessions::{RefreshToken, Session};
use crate::state::{App, Org};
use crate::util;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Instant;

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Which flow issued a token: each answers with its own documented set of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    JwtBearer,
    RefreshToken,
    ClientCredentials,
    Password,
}

pub struct Grant {
    pub kind: GrantKind,
    pub user_id: String,
    pub username: String,
    pub client_id: String,
    pub scope: String,
    pub refresh_token: Option<String>,
    /// New refresh token to return (rotation).
    pub new_refresh: Option<String>,
}

type OAuthResult<T> = Result<T, Response>;

fn err(error: &str, desc: &str) -> Response {
    Response::oauth_error(400, error, desc)
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `POST /services/oauth2/token`
pub fn token(org: &Org, req: &Request, dead_tokens: bool) -> Response {
    let form = req.form();
    let grant = match param(&form, "grant_type") {
        Some(JWT_GRANT) => jwt_bearer(org, &form),
        Some("refresh_token") => refresh(org, &form, req),
        Some("client_credentials") => client_credentials(org, &form, req),
        Some("password") => password(org, &form, req),
        _ => Err(err("unsupported_grant_type", "grant type not supported")),
    };
    match grant {
        Ok(g) => issue(org, g, dead_tokens),
        Err(r) => r,
    }
}

/// Creates the session and the token response (no `expires_in`; `issued_at` in ms as text).
fn issue(org: &Org, g: Grant, dead: bool) -> Response {
    let token = format!("{}!AQ{}", org.org_id15(), util::random_token(94));
    let issued_at = util::now_ms();
    let id = org.identity_url(&g.user_id);
    let secret = org
        .app(&g.client_id)
        .and_then(|a| a.seed.client_secret.clone())
        .unwrap_or_default();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, format!("{id}{issued_at}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
    {
        let mut data = org.data();
        if let Some(rt) = &g.new_refresh {
            data.sessions.add_refresh(
                rt.clone(),
                RefreshToken {
                    username: g.username.clone(),
                    client_id: g.client_id.clone(),
                },
            );
        }
        if !dead {
            data.sessions.add(Session {
                token: token.clone(),
                user_id: g.user_id.clone(),
                username: g.username.clone(),
                client_id: Some(g.client_id.clone()),
                scope: g.scope.clone(),
                issued_at_ms: issued_at,
                last_used: Instant::now(),
                refresh_token: g.new_refresh.clone().or(g.refresh_token.clone()),
                calls: 0,
            });
        }
    }
    let body = token_body(TokenFields {
        kind: g.kind,
        access_token: token,
        instance_url: org.instance_url.clone(),
        id,
        issued_at: issued_at.to_string(),
        signature,
        scope: g.scope,
        refresh_token: g.new_refresh,
    });
    Response::json(200, &body).with_header(
        "Cache-Control",
        "no-cache,must-revalidate,max-age=0,no-store,private",
    )
}

struct TokenFields {
    kind: GrantKind,
    access_token: String,
    instance_url: String,
    id: String,
    issued_at: String,
    signature: String,
    scope: String,
    refresh_token: Option<String>,
}

/// The success body of one grant, with exactly the fields (and in the order) of Salesforce
/// Help's example for that flow:
/// - JWT bearer: `access_token, scope, instance_url, id, token_type` (no `issued_at`, no
///   `signature`, no `refresh_token`);
/// - client credentials: `access_token, signature, scope, instance_url, id, token_type, issued_at`;
/// - refresh token: the client-credentials set, plus `refresh_token` only when the app rotates
///   refresh tokens;
/// - username-password: `access_token, instance_url, id, token_type, issued_at, signature` (no
///   `scope`).
fn token_body(t: TokenFields) -> Value {
    let mut body = match t.kind {
        GrantKind::JwtBearer => json!({
            "access_token": t.access_token, "scope": t.scope, "instance_url": t.instance_url,
            "id": t.id, "token_type": "Bearer",
        }),
        GrantKind::ClientCredentials | GrantKind::RefreshToken => json!({
            "access_token": t.access_token, "signature": t.signature, "scope": t.scope,
            "instance_url": t.instance_url, "id": t.id, "token_type": "Bearer",
            "issued_at": t.issued_at,
        }),
        GrantKind::Password => json!({
            "access_token": t.access_token, "instance_url": t.instance_url, "id": t.id,
            "token_type": "Bearer", "issued_at": t.issued_at, "signature": t.signature,
        }),
    };
    if let (GrantKind::RefreshToken, Some(rt)) = (t.kind, t.refresh_token) {
        body["refresh_token"] = Value::from(rt);
    }
    body
}

fn jwt_bearer(org: &Org, form: &[(String, String)]) -> OAuthResult<Grant> {
    let invalid = || err("invalid_grant", "invalid assertion");
    let assertion = param(form, "assertion").ok_or_else(invalid)?;
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(invalid());
    }
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| invalid())
    };
    let header: Value = serde_json::from_slice(&b64(parts[0])?).map_err(|_| invalid())?;
    let claims: Value = serde_json::from_slice(&b64(parts[1])?).map_err(|_| invalid())?;
    let sig = b64(parts[2])?;
    if header["alg"].as_str() != Some("RS256") {
        return Err(err("invalid_grant", "invalid assertion"));
    }
    let iss = claims["iss"].as_str().unwrap_or("");
    let app = org
        .app(iss)
        .ok_or_else(|| err("invalid_client_id", "client identifier invalid"))?;
    let aud_ok = |a: &str| {
        org.seed
            .jwt_audiences
            .iter()
            .any(|x| x.trim_end_matches('/') == a.trim_end_matches('/'))
    };
    let aud_valid = match &claims["aud"] {
        Value::String(a) => aud_ok(a),
        Value::Array(list) => list.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud_valid {
        return Err(err("invalid_grant", "audience is invalid"));
    }
    let key = app.rsa_key.as_ref().ok_or_else(invalid)?;
    let msg = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(msg.as_bytes(), &sig)
        .map_err(|_| invalid())?;
    // simple-salesforce sends exp as a string.
    let exp = match &claims["exp"] {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(invalid)?;
    let now = util::now_ms() as f64 / 1000.0;
    if exp < now {
        return Err(err("invalid_grant", "expired authorization code"));
    }
    if exp > now + org.seed.jwt_max_exp_ahead_s as f64 {
        return Err(invalid());
    }
    if !app.has_grant("jwt_bearer") {
        return Err(err("unsupported_grant_type", "grant type not supported"));
    }
    let sub = claims["sub"].as_str().unwrap_or("");
    let (user_id, active) = org
        .user_by_username(sub)
        .ok_or_else(|| err("invalid_grant", "user hasn't approved this consumer"))?;
    let pre = &app.seed.preauthorized_users;
    if !pre.iter().any(|u| u == "*" || u.eq_ignore_ascii_case(sub)) {
        return Err(err("invalid_grant", "user hasn't approved this consumer"));
    }
    if !active {
        return Err(err("invalid_grant", "inactive user"));
    }
    Ok(Grant {
        kind: GrantKind::JwtBearer,
        user_id,
        username: sub.to_string(),
        client_id: app.seed.client_id.clone(),
        scope: app.seed.scope.clone(),
        refresh_token: None,
        new_refresh: None,
    })
}

/// Client id/secret from `Authorization: Basic` or the body.
fn client_auth(form: &[(String, String)], req: &Request) -> (Option<String>, Option<String>) {
    if let Some(basic) = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
    {
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) {
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((id, secret)) = text.split_once(':') {
                let dec = |s: &str| {
                    form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                return (Some(dec(id)), Some(dec(secret)));
            }
        }
    }
    (
        param(form, "client_id").map(String::from),
        param(form, "client_secret").map(String::from),
    )
}

/// Looks up the app and checks the secret when one is given (or `require_secret`).
fn authenticate_app<'a>(
    org: &'a Org,
    id: Option<&str>,
    secret: Option<&str>,
    require_secret: bool,
) -> OAuthResult<&'a App> {
    let app = id
        .and_then(|id| org.app(id))
        .ok_or_else(|| err("invalid_client_id", "client identifier invalid"))?;
    match (secret, &app.seed.client_secret) {
        (Some(given), Some(real)) if given == real => Ok(app),
        (None, _) if !require_secret => Ok(app),
        _ => Err(err("invalid_client", "invalid client credentials")),
    }
}

fn refresh(org: &Org, form: &[(String, String)], req: &Request) -> OAuthResult<Grant> {
    let (id, secret) = client_auth(form, req);
    let app = authenticate_app(org, id.as_deref(), secret.as_deref(), false)?;
    let expired = || err("invalid_grant", "expired access/refresh token");
    let token = param(form, "refresh_token")
        .ok_or_else(expired)?
        .to_string();
    let rt = org
        .data()
        .sessions
        .refresh(&token)
        .cloned()
        .ok_or_else(expired)?;
    if rt.client_id != app.seed.client_id {
        return Err(expired());
    }
    if !app.has_grant("refresh_token") {
        return Err(err("unsupported_grant_type", "grant type not supported"));
    }
    let (user_id, active) = org.user_by_username(&rt.username).ok_or_else(expired)?;
    if !active {
        return Err(err("invalid_grant", "inactive user"));
    }
    let new_refresh = if app.seed.refresh_token_rotation {
        // The old refresh token dies; access tokens already issued keep working.
        org.data().sessions.forget_refresh(&token);
        Some(format!("5Aep861{}", util::random_token(80)))
    } else {
        None
    };
    Ok(Grant {
        kind: GrantKind::RefreshToken,
        user_id,
        username: rt.username,
        client_id: app.seed.client_id.clone(),
        scope: app.seed.scope.clone(),
        refresh_token: Some(token),
        new_refresh,
    })
}

fn client_credentials(org: &Org, form: &[(String, String)], req: &Request) -> OAuthResult<Grant> {
    if org.seed.my_domain && org.is_login_host_only(&req.host()) {
        return Err(err("invalid_grant", "request not supported on this domain"));
    }
    let (id, secret) = client_auth(form, req);
    let app = authenticate_app(org, id.as_deref(), secret.as_deref(), true)?;
    if !app.has_grant("client_credentials") {
        return Err(err("unsupported_grant_type", "grant type not supported"));
    }
    let username = app
        .seed
        .run_as
        .clone()
        .ok_or_else(|| err("invalid_grant", "no client credentials user enabled"))?;
    let (user_id, active) = org
        .user_by_username(&username)
        .ok_or_else(|| err("invalid_grant", "no client credentials user enabled"))?;
    if !active {
        return Err(err("invalid_grant", "inactive user"));
    }
    Ok(Grant {
        kind: GrantKind::ClientCredentials,
        user_id,
        username,
        client_id: app.seed.client_id.clone(),
        scope: app.seed.scope.clone(),
        refresh_token: None,
        new_refresh: None,
    })
}

fn password(org: &Org, form: &[(String, String)], req: &Request) -> OAuthResult<Grant> {
    let (id, secret) = client_auth(form, req);
    let app = authenticate_app(org, id.as_deref(), secret.as_deref(), true)?;
    if !app.has_grant("password") {
        return Err(err("unsupported_grant_type", "grant type not supported"));
    }
    let username = param(form, "username").unwrap_or("");
    let given = param(form, "password").unwrap_or("");
    let user = check_password(org, username, given)
        .map_err(|_| err("invalid_grant", "authentication failure"))?;
    if !user.1 {
        return Err(err("invalid_grant", "inactive user"));
    }
    Ok(Grant {
        kind: GrantKind::Password,
        user_id: user.0,
        username: username.to_string(),
        client_id: app.seed.client_id.clone(),
        scope: app.seed.scope.clone(),
        refresh_token: None,
        new_refresh: None,
    })
}

/// Why a username/password login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    Invalid,
    /// The password was right but the security token was missing.
    NeedsToken,
}

/// Username + (password followed by the security token) → (user id, active).
pub fn check_password(
    org: &Org,
    username: &str,
    given: &str,
) -> Result<(String, bool), LoginFailure> {
    let u = org
        .seed
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(username))
        .ok_or(LoginFailure::Invalid)?;
    let pw = u.password.as_deref().ok_or(LoginFailure::Invalid)?;
    if given != format!("{pw}{}", u.security_token) {
        if !u.security_token.is_empty() && given == pw {
            return Err(LoginFailure::NeedsToken);
        }
        return Err(LoginFailure::Invalid);
    }
    org.user_by_username(username).ok_or(LoginFailure::Invalid)
}

/// `POST /services/oauth2/revoke` (also `GET ?token=`).
pub fn revoke(org: &Org, req: &Request) -> Response {
    let token = param(&req.form(), "token")
        .map(String::from)
        .or_else(|| req.query_param("token"));
    let Some(token) = token else {
        return err("unsupported_token_type", "this token type is not supported");
    };
    let mut data = org.data();
    if data.sessions.revoke_access(&token) || data.sessions.revoke_refresh(&token) {
        Response::empty(200)
    } else {
        err("invalid_token", "invalid token")
    }
}

/// `POST /services/oauth2/introspect`
pub fn introspect(org: &Org, req: &Request) -> Response {
    let form = req.form();
    let (id, secret) = client_auth(&form, req);
    if let Err(r) = authenticate_app(org, id.as_deref(), secret.as_deref(), true) {
        return r;
    }
    let token = param(&form, "token").unwrap_or("");
    let timeout = org.session_timeout();
    let data = org.data();
    if let Some(s) = data.sessions.peek(token, timeout) {
        let iat = s.issued_at_ms / 1000;
        let exp = util::now_ms() / 1000 + timeout.saturating_sub(s.last_used.elapsed()).as_secs();
        return Response::json(
            200,
            &json!({
                "active": true, "scope": s.scope, "client_id": s.client_id, "username": s.username,
                "sub": org.identity_url(&s.user_id), "token_type": "access_token",
                "exp": exp, "iat": iat, "nbf": iat,
            }),
        );
    }
    if let Some(rt) = data.sessions.refresh(token) {
        return Response::json(
            200,
            &json!({"active": true, "client_id": rt.client_id, "username": rt.username,
                    "token_type": "refresh_token"}),
        );
    }
    Response::json(200, &json!({"active": false}))
}

/// The session for a bearer token (userinfo / identity): 403 `Bad_OAuth_Token` shape as
/// Salesforce's identity service answers with plain text for bad tokens.
pub fn identity(org: &Org, req: &Request, openid: bool) -> Response {
    let token = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("OAuth "))
        })
        .map(str::trim)
        .map(String::from)
        .or_else(|| req.query_param("oauth_token"));
    let session = token.and_then(|t| org.use_session(&t));
    let Some(s) = session else {
        return Response::new(403, "text/plain;charset=UTF-8", "Bad_OAuth_Token");
    };
    let data = org.data();
    let user = data.store.get(&s.user_id);
    let field = |f: &str| user.map_or(Value::Null, |u| u.get(f).clone());
    let id_url = org.identity_url(&s.user_id);
    let v = if openid {
        json!({
            "sub": id_url, "user_id": s.user_id, "organization_id": org.org_id,
            "preferred_username": s.username, "name": field("Name"), "email": field("Email"),
            "given_name": field("FirstName"), "family_name": field("LastName"),
            "active": field("IsActive"),
        })
    } else {
        json!({
            "id": id_url, "asserted_user": true, "user_id": s.user_id,
            "organization_id": org.org_id, "username": s.username,
            "display_name": field("Name"), "email": field("Email"), "active": field("IsActive"),
            "urls": {
                "rest": format!("{}/services/data/v{{version}}/", org.instance_url),
                "sobjects": format!("{}/services/data/v{{version}}/sobjects/", org.instance_url),
                "query": format!("{}/services/data/v{{version}}/query/", org.instance_url),
                "search": format!("{}/services/data/v{{version}}/search/", org.instance_url),
                "partner": format!("{}/services/Soap/u/{{version}}/{}", org.instance_url, org.org_id15()),
            },
        })
    };
    Response::json(200, &v)
}
