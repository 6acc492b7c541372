//! Issue 14: a refresh-token org with rotation in a fleet has one refresher at a time (a Redis
//! lease with fencing), and every sidecar hands the same new token to its module. Real
//! `redis-server` on a free loopback port, real sidecar processes (each its own state and token
//! directories), one emulated org whose connected app rotates refresh tokens.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use natterbox_common::config::FleetSettings;
use natterbox_common::fleet::{
    acquire_refresh_lease, read_token, release_refresh_lease, store_token, Keys, RedisLink,
    StoredToken,
};
use natterbox_common::handoff::TokenFile;
use natterbox_common::wire::Message;
use support::redis_server::RedisServer;
use support::*;

const ROTATING_CLIENT: &str = "3MVG9Emu.Rotating.ClientId";
const ROTATING_SECRET: &str = "rotating-secret";
const CONFIGURED_REFRESH: &str = "5Aep861Emu.Refresh.Rotating.0001";

fn settings(redis: &RedisServer, lease: Duration) -> FleetSettings {
    FleetSettings {
        redis_url: redis.url(),
        redis_timeout: Duration::from_millis(500),
        lease: Duration::from_millis(1500),
        l2_ttl: Duration::from_secs(300),
        l2_negative_ttl: Duration::from_secs(30),
        key_prefix: "nbsf".into(),
        token_lease: lease,
    }
}

async fn link_up(redis: &RedisServer) -> Arc<RedisLink> {
    let link = RedisLink::start(
        &settings(redis, Duration::from_secs(2)),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    eventually(Duration::from_secs(10), "the redis link", || async {
        link.is_up()
    })
    .await;
    link
}

fn in_a_second() -> Instant {
    Instant::now() + Duration::from_secs(1)
}

fn token(access: &str, refresh: &str, fence: u64) -> StoredToken {
    StoredToken {
        access_token: access.into(),
        instance_url: "https://acme.my.salesforce.com".into(),
        identity_url: String::new(),
        issued_at_ms: 1_700_000_000_000,
        refresh_token: Some(refresh.into()),
        configured_sha256: "c0ffee".into(),
        fence,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_exclusive_and_a_late_write_with_an_older_fence_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let link = link_up(&redis).await;
    let keys = Keys::new("nbsf");
    let lease = Duration::from_millis(400);

    let first = acquire_refresh_lease(&link, &keys, "acme", "a-0", lease, in_a_second())
        .await
        .unwrap();
    assert_eq!(first, Some(1), "the first holder gets fence 1");
    let second = acquire_refresh_lease(&link, &keys, "acme", "b-0", lease, in_a_second())
        .await
        .unwrap();
    assert_eq!(second, None, "held: nobody else gets it");
    // Another org's lease is its own.
    assert_eq!(
        acquire_refresh_lease(&link, &keys, "globex", "b-0", lease, in_a_second())
            .await
            .unwrap(),
        Some(1)
    );

    // The first holder stalls; its lease ends and the second takes the next fence.
    let deadline = Instant::now() + Duration::from_secs(5);
    let taken = loop {
        let taken = acquire_refresh_lease(&link, &keys, "acme", "b-1", lease, in_a_second())
            .await
            .unwrap();
        if taken.is_some() || Instant::now() > deadline {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(taken, Some(2));
    // The stalled holder's release does not free its successor's lease.
    release_refresh_lease(&link, &keys, "acme", "a-0", in_a_second())
        .await
        .unwrap();
    assert_eq!(
        redis.command("EXISTS nbsf:refresh:acme").as_deref(),
        Some(":1")
    );

    assert!(store_token(
        &link,
        &keys,
        "acme",
        &token("new", "rt-2", 2),
        in_a_second()
    )
    .await
    .unwrap());
    // The stalled holder's late write: refused, the successor's token stays.
    assert!(!store_token(
        &link,
        &keys,
        "acme",
        &token("old", "rt-1", 1),
        in_a_second()
    )
    .await
    .unwrap());
    let (stored, leased) = read_token(&link, &keys, "acme", in_a_second())
        .await
        .unwrap();
    assert!(leased);
    let stored = stored.expect("a stored token");
    assert_eq!(stored.access_token, "new");
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-2"));
    assert_eq!(stored.fence, 2);
    // The same fence again (a retried write) is taken.
    assert!(store_token(
        &link,
        &keys,
        "acme",
        &token("new2", "rt-2", 2),
        in_a_second()
    )
    .await
    .unwrap());

    release_refresh_lease(&link, &keys, "acme", "b-1", in_a_second())
        .await
        .unwrap();
    assert_eq!(
        redis.command("EXISTS nbsf:refresh:acme").as_deref(),
        Some(":0")
    );
}

/// One sidecar of the fleet: its own directories, the shared org and Redis.
fn sidecar(
    emu: &sf_emulator::Emulator,
    redis: &RedisServer,
    lease_ms: u64,
    extra_orgs: &str,
) -> Setup {
    let setup = Setup::new();
    let secret = setup.secret("app.secret", ROTATING_SECRET);
    let refresh = setup.secret("refresh.token", CONFIGURED_REFRESH);
    let auth = format!(
        r#"flow="refresh-token" client-id="{ROTATING_CLIENT}" client-secret-file="{}" refresh-token-file="{}""#,
        secret.display(),
        refresh.display()
    );
    setup.write_config(
        &format!(
            "{}{extra_orgs}",
            org_xml("acme", &emu.login_url(), &auth, "")
        ),
        "",
    );
    let xml = std::fs::read_to_string(setup.config_path()).unwrap();
    let fleet = format!(
        r#"<fleet><param name="redis-url" value="{}"/><param name="token-lease-ms" value="{lease_ms}"/></fleet>"#,
        redis.url()
    );
    std::fs::write(
        setup.config_path(),
        xml.replace("</configuration>", &format!("{fleet}</configuration>")),
    )
    .unwrap();
    setup
}

async fn wait_token(setup: &Setup, what: &str, ready: impl Fn(&TokenFile) -> bool) -> TokenFile {
    eventually(Duration::from_secs(20), what, || async {
        setup.token_file("acme").is_some_and(|t| ready(&t))
    })
    .await;
    setup.token_file("acme").unwrap()
}

/// The rotated refresh token a sidecar saved in its state directory.
fn saved_refresh(setup: &Setup) -> String {
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(setup.path("state/rotated-refresh-acme.json")).unwrap(),
    )
    .unwrap();
    saved["refresh_token"].as_str().unwrap().to_string()
}

async fn report_dead(setup: &Setup, generation: u64) {
    let mut module = ModuleConn::connect(&setup.socket()).await;
    module
        .send(&Message::TokenRefresh {
            org: "acme".into(),
            generation,
            worked: true,
        })
        .await;
}

async fn stored(redis: &RedisServer) -> StoredToken {
    let link = link_up(redis).await;
    read_token(&link, &Keys::new("nbsf"), "acme", in_a_second())
        .await
        .unwrap()
        .0
        .expect("a token stored in redis")
}

/// The emulator's answer to a refresh with `refresh_token`: its HTTP status.
async fn refresh_with(emu: &sf_emulator::Emulator, refresh_token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", emu.login_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", ROTATING_CLIENT),
            ("client_secret", ROTATING_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_make_one_refresh_and_both_modules_get_the_new_token() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let a = sidecar(&emu, &redis, 35_000, "");
    let b = sidecar(&emu, &redis, 35_000, "");

    let running_a = a.start().await;
    let first = wait_token(&a, "A's first token", |_| true).await;
    assert_eq!(token_requests(&emu), 1);
    // B starts, finds A's token in Redis and hands it off without asking Salesforce.
    let running_b = b.start().await;
    let on_b = wait_token(&b, "B's first token", |_| true).await;
    assert_eq!(on_b.access_token, first.access_token);
    assert_eq!(token_requests(&emu), 1, "B took the stored token");
    assert_eq!(org_status(&running_b, "acme").await["fleet_adopted"], 1);
    assert_eq!(saved_refresh(&a), saved_refresh(&b));
    assert_ne!(saved_refresh(&a), CONFIGURED_REFRESH, "rotated");

    // Both modules find the token dead at once: one refresh for the fleet.
    assert!(emu.admin().expire_sessions() > 0);
    assert!(!token_works(&first).await);
    tokio::join!(
        report_dead(&a, first.generation),
        report_dead(&b, on_b.generation)
    );
    let new_a = wait_token(&a, "A's new token", |t| t.generation > first.generation).await;
    let new_b = wait_token(&b, "B's new token", |t| t.generation > on_b.generation).await;
    assert_eq!(
        new_a.access_token, new_b.access_token,
        "the same new token on both hosts"
    );
    assert!(token_works(&new_a).await);
    assert_eq!(
        token_requests(&emu),
        2,
        "exactly one refresh request for both sidecars"
    );
    let in_redis = stored(&redis).await;
    assert_eq!(in_redis.access_token, new_a.access_token);
    assert_eq!(in_redis.fence, 2);
    let rotated = in_redis
        .refresh_token
        .clone()
        .expect("the rotated refresh token");
    assert_eq!(
        saved_refresh(&a),
        rotated,
        "A saved the rotated refresh token"
    );
    assert_eq!(
        saved_refresh(&b),
        rotated,
        "B saved the rotated refresh token"
    );
    // The refresh tokens spent before are dead at the emulator: nobody may use them again.
    assert_eq!(refresh_with(&emu, CONFIGURED_REFRESH).await, 400);
    assert_eq!(token_requests(&emu), 3);

    // Again, reported on B alone: B refreshes with the rotated token (the emulator accepts
    // only that one), and A, when its module reports, takes B's token without a request.
    assert!(emu.admin().expire_sessions() > 0);
    report_dead(&b, new_b.generation).await;
    let third_b = wait_token(&b, "B's third token", |t| t.generation > new_b.generation).await;
    assert!(
        token_works(&third_b).await,
        "B refreshed with the live refresh token"
    );
    assert_eq!(token_requests(&emu), 4);
    report_dead(&a, new_a.generation).await;
    let third_a = wait_token(&a, "A's third token", |t| t.generation > new_a.generation).await;
    assert_eq!(third_a.access_token, third_b.access_token);
    assert_eq!(token_requests(&emu), 4, "A took B's token");
    assert_eq!(saved_refresh(&a), saved_refresh(&b));
    assert_eq!(org_status(&running_a, "acme").await["fleet_fence"], 3);

    // A restarted sidecar takes the stored token.
    assert!(running_a.stop().success());
    let running_a = a.start().await;
    let restarted = wait_token(&a, "A's token after its restart", |t| {
        t.generation > third_a.generation
    })
    .await;
    assert_eq!(restarted.access_token, third_b.access_token);
    assert_eq!(token_requests(&emu), 4);
    assert_eq!(org_status(&running_a, "acme").await["healthy"], true);

    for (name, setup) in [("A", &a), ("B", &b)] {
        let log = setup.log();
        assert!(!log.contains("5Aep861"), "no refresh token in {name}'s log");
        assert!(
            !log.contains(&third_b.access_token),
            "no access token in {name}'s log"
        );
    }
    drop(running_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_mid_refresh_is_taken_over_after_its_lease() {
    const LEASE_MS: u64 = 2_000;
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let a = sidecar(&emu, &redis, LEASE_MS, "");
    let b = sidecar(&emu, &redis, LEASE_MS, "");
    let running_a = a.start().await;
    let first = wait_token(&a, "A's first token", |_| true).await;
    let running_b = b.start().await;
    let on_b = wait_token(&b, "B's first token", |_| true).await;
    assert_eq!(on_b.access_token, first.access_token);
    assert_eq!(token_requests(&emu), 1);

    // A's next token request is held at the emulator (and never handled: it ends in a 503),
    // as a refresh stuck on its way to Salesforce.
    emu.admin().expire_sessions();
    emu.admin().add_fault(sf_emulator::FaultRule {
        path_prefix: "/services/oauth2/token".into(),
        latency_ms: 30_000,
        status: Some(503),
        times: Some(1),
        ..Default::default()
    });
    report_dead(&a, first.generation).await;
    eventually(
        Duration::from_secs(10),
        "A's request held at the emulator",
        || async { emu.admin().stats()["in_flight"].as_u64().unwrap_or(0) >= 1 },
    )
    .await;
    assert_eq!(
        redis.command("INCRBY nbsf:refresh-fence:acme 0").as_deref(),
        Some(":2")
    );
    let held_since = Instant::now();
    assert_eq!(
        redis.command("EXISTS nbsf:refresh:acme").as_deref(),
        Some(":1")
    );
    running_a.kill9();

    // B's module finds the token dead: B waits out A's lease, then refreshes itself.
    report_dead(&b, on_b.generation).await;
    let new_b = wait_token(&b, "B's token after the takeover", |t| {
        t.generation > on_b.generation
    })
    .await;
    let waited = held_since.elapsed();
    assert!(
        waited >= Duration::from_millis(LEASE_MS / 2),
        "B refreshed only after A's lease ended ({waited:?})"
    );
    assert!(token_works(&new_b).await);
    assert_eq!(
        token_requests(&emu),
        2,
        "B's request is the only one handled"
    );
    let status = org_status(&running_b, "acme").await;
    assert_eq!(status["fleet_fence"], 3, "{status}");
    assert_eq!(status["healthy"], true, "{status}");

    // A's late write, under the fence of the lease it lost: refused.
    let link = link_up(&redis).await;
    let keys = Keys::new("nbsf");
    let mut late = stored(&redis).await;
    assert_eq!(late.access_token, new_b.access_token);
    late.access_token = "late-write-from-the-killed-holder".into();
    late.fence = 2;
    assert!(!store_token(&link, &keys, "acme", &late, in_a_second())
        .await
        .unwrap());
    assert_eq!(stored(&redis).await.access_token, new_b.access_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_last_token_stays_and_the_refresh_waits_for_redis() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    // A JWT org beside it: no lease, no rotation.
    let jwt = org_xml(
        "jwt",
        &emu.login_url(),
        &jwt_auth(
            JWT_CLIENT,
            INTEGRATION_USER,
            &key_file("test-jwt-private-key.pem"),
            "https://login.salesforce.com",
        ),
        "",
    );
    let a = sidecar(&emu, &redis, 35_000, &jwt);
    let running = a.start().await;
    let first = wait_token(&a, "the first token", |_| true).await;
    eventually(Duration::from_secs(10), "the JWT org's token", || async {
        a.token_file("jwt").is_some()
    })
    .await;
    assert_eq!(
        redis.command("EXISTS nbsf:refresh-fence:jwt").as_deref(),
        Some(":0")
    );
    assert_eq!(
        redis.command("EXISTS nbsf:token:jwt").as_deref(),
        Some(":0")
    );
    assert_eq!(
        redis.command("EXISTS nbsf:token:acme").as_deref(),
        Some(":1")
    );
    let requests = token_requests(&emu);

    redis.kill();
    emu.admin().expire_sessions();
    report_dead(&a, first.generation).await;
    eventually(
        Duration::from_secs(10),
        "the refresh waiting for redis",
        || async {
            org_status(&running, "acme").await["last_error_code"] == "fleet_refresh_waiting"
        },
    )
    .await;
    assert_eq!(
        token_requests(&emu),
        requests,
        "no refresh without the fleet's lease"
    );
    assert_eq!(
        a.token_file("acme").unwrap(),
        first,
        "the module keeps its last token"
    );

    redis.restart();
    let second = wait_token(&a, "the token once redis is back", |t| {
        t.generation > first.generation
    })
    .await;
    assert!(token_works(&second).await);
    assert_eq!(token_requests(&emu), requests + 1);
    assert_eq!(stored(&redis).await.access_token, second.access_token);
    let status = org_status(&running, "acme").await;
    assert_eq!(status["healthy"], true, "{status}");
}

/// The case no client can mend: Salesforce handled the holder's refresh (the old refresh token
/// is dead, the rotated one was in the answer) and the holder died before storing it. The next
/// holder's refresh is refused; every sidecar keeps its last token and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_after_salesforce_rotated_leaves_the_fleet_its_last_token_and_says_so() {
    const LEASE_MS: u64 = 2_000;
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let a = sidecar(&emu, &redis, LEASE_MS, "");
    let b = sidecar(&emu, &redis, LEASE_MS, "");
    let running_a = a.start().await;
    let first = wait_token(&a, "A's first token", |_| true).await;
    let running_b = b.start().await;
    let on_b = wait_token(&b, "B's first token", |_| true).await;

    // A's refresh is handled at once (rotating the refresh token) but answered only later.
    emu.admin().add_fault(sf_emulator::FaultRule {
        path_prefix: "/services/oauth2/token".into(),
        latency_ms: 30_000,
        times: Some(1),
        ..Default::default()
    });
    report_dead(&a, first.generation).await;
    eventually(Duration::from_secs(10), "A's refresh handled", || async {
        token_requests(&emu) == 2
    })
    .await;
    running_a.kill9();

    report_dead(&b, on_b.generation).await;
    eventually(Duration::from_secs(10), "B's refused refresh", || async {
        org_status(&running_b, "acme").await["last_error_code"] == "invalid_grant"
    })
    .await;
    assert_eq!(token_requests(&emu), 3, "B asked once, after A's lease");
    let status = org_status(&running_b, "acme").await;
    assert!(
        status["advice"]
            .as_str()
            .unwrap()
            .contains("authorize again"),
        "{status}"
    );
    assert_eq!(
        b.token_file("acme").unwrap(),
        on_b,
        "B's module keeps its last token"
    );
    assert_eq!(stored(&redis).await.access_token, first.access_token);
}
