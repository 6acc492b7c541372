use crate::common::*;
use serde_json::{json, Value};
use sf_emulator::FaultRule;
use std::time::{Duration, Instant};

fn limits_path() -> String {
    format!("/services/data/{V}/limits")
}

#[tokio::test]
async fn latency_and_status_scoped_by_prefix() {
    let emu = start().await;
    let tok = token(&emu).await;
    emu.admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 300,
        jitter_ms: 50,
        ..Default::default()
    });
    let t = Instant::now();
    assert_eq!(get(&emu, &tok, &limits_path()).await.0, 200);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    let t = Instant::now();
    token(&emu).await;
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "token endpoint not delayed"
    );
    emu.admin().clear_faults();
    let id = emu.admin().add_fault(FaultRule {
        path_prefix: "/services/data/v66.0/query".into(),
        status: Some(503),
        times: Some(2),
        ..Default::default()
    });
    assert!(id > 0);
    for _ in 0..2 {
        let (s, _, b) = get(&emu, &tok, &q("SELECT Id FROM Account")).await;
        assert_eq!(s, 503);
        assert_eq!(b[0]["errorCode"], "SERVER_UNAVAILABLE");
    }
    assert_eq!(
        get(&emu, &tok, &q("SELECT Id FROM Account")).await.0,
        200,
        "times exhausted"
    );
    assert_eq!(get(&emu, &tok, &limits_path()).await.0, 200);
}

#[tokio::test]
async fn reset_truncate_and_garbage() {
    let emu = start().await;
    let tok = token(&emu).await;
    let url = format!("{}{}", emu.instance_url(), limits_path());
    let id = emu.admin().add_fault(FaultRule {
        reset_rate: 1.0,
        ..Default::default()
    });
    let e = client()
        .get(&url)
        .bearer_auth(&tok)
        .send()
        .await
        .expect_err("reset");
    assert!(!e.is_status(), "{e}");
    emu.admin().remove_fault(id);
    let id = emu.admin().add_fault(FaultRule {
        truncate_rate: 1.0,
        ..Default::default()
    });
    let r = client().get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "body cut short");
    emu.admin().remove_fault(id);
    emu.admin().add_fault(FaultRule {
        garbage_rate: 1.0,
        ..Default::default()
    });
    let r = client().get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    emu.admin().clear_faults();
    assert_eq!(get(&emu, &tok, &limits_path()).await.0, 200);
}

#[tokio::test]
async fn concurrent_limit_counts_long_running_requests() {
    let emu = start().await;
    let tok = token(&emu).await;
    emu.admin().set_limits(sf_emulator::LimitsUpdate {
        concurrent_max: Some(2),
        long_running_ms: Some(100),
        ..Default::default()
    });
    emu.admin().add_fault(FaultRule {
        path_prefix: "/services/data/v66.0/query".into(),
        latency_ms: 800,
        ..Default::default()
    });
    let mut slow = vec![];
    for _ in 0..2 {
        let url = format!("{}{}", emu.instance_url(), q("SELECT Id FROM Account"));
        let tok = tok.clone();
        slow.push(tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, h, b) = get(&emu, &tok, &limits_path()).await;
    assert_eq!(s, 403);
    assert!(h.get("retry-after").is_none());
    assert_eq!(
        b,
        json!([{"message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    for j in slow {
        assert_eq!(j.await.unwrap(), 200);
    }
    assert_eq!(get(&emu, &tok, &limits_path()).await.0, 200);
}

#[tokio::test]
async fn five_hundred_concurrent_requests_are_counted() {
    let emu = start().await;
    let tok = token(&emu).await;
    emu.admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms: 200,
        ..Default::default()
    });
    let soql = "SELECT Id FROM Contact WHERE Phone = '(415) 555-0123'";
    let url = format!("{}{}", emu.instance_url(), q(soql));
    let c = client();
    let mut tasks = vec![];
    for _ in 0..500 {
        let (c, url, tok) = (c.clone(), url.clone(), tok.clone());
        tasks.push(tokio::spawn(async move {
            c.get(url)
                .bearer_auth(tok)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 500);
    let stats = emu.admin().stats();
    assert_eq!(stats["endpoints"]["query"], 500);
    assert_eq!(stats["queries"][soql], 500);
    assert!(emu.admin().peak_in_flight() >= 50, "{stats}");
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(emu.admin().endpoint_count("query"), 500);
}

#[tokio::test]
async fn admin_http_api() {
    let emu = start().await;
    let base = format!("{}/__emulator", emu.login_url());
    let c = client();
    let v: Value = c
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["org_id"], emu.org_id());
    let v: Value = c
        .post(format!("{base}/faults"))
        .json(&json!({"path_prefix": "/services/data", "status": 500}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["id"].as_u64().unwrap();
    let tok = token(&emu).await;
    let (s, _, b) = get(&emu, &tok, &limits_path()).await;
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (500, Some("UNKNOWN_EXCEPTION"))
    );
    let list: Value = c
        .get(format!("{base}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["id"], id);
    c.delete(format!("{base}/faults/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&emu, &tok, &limits_path()).await.0, 200);
    let r = c
        .post(format!("{base}/faults"))
        .json(&json!({"bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = c
        .post(format!("{base}/limits"))
        .json(&json!({"daily_max": 10, "daily_used": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["daily_max"], 10);
    assert_eq!(get(&emu, &tok, &limits_path()).await.0, 403);
    let v: Value = c
        .post(format!("{base}/sessions/expire"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["expired"], 1);
    let v: Value = c
        .post(format!("{base}/config"))
        .json(&json!({"batch_size": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["batch_size"], 2);
    let v: Value = c
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["endpoints"]["oauth_token"].as_u64().unwrap() >= 1);
    assert_eq!(v["api_usage"]["max"], 10);
    // token, limits (500), limits (200), limits (403): admin calls are not counted
    assert_eq!(v["total_requests"], 4, "{v}");
    let v: Value = c
        .get(format!("{base}/records/Contact"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 9);
    // reset restores limits usage, clears stats; data=true restores records
    let tok = token(&emu).await;
    let (s, _) = send(
        &emu,
        &tok,
        reqwest::Method::POST,
        &format!("/services/data/{V}/sobjects/Contact"),
        Some(json!({"LastName": "Extra"})),
    )
    .await;
    assert_eq!(s, 403, "still over the daily limit");
    c.post(format!("{base}/reset"))
        .json(&json!({"data": true}))
        .send()
        .await
        .unwrap();
    let tok = token(&emu).await;
    let (s, _) = send(
        &emu,
        &tok,
        reqwest::Method::POST,
        &format!("/services/data/{V}/sobjects/Contact"),
        Some(json!({"LastName": "Extra"})),
    )
    .await;
    assert_eq!(s, 201);
    let v: Value = c
        .get(format!("{base}/created"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    c.post(format!("{base}/reset"))
        .json(&json!({"data": true}))
        .send()
        .await
        .unwrap();
    let v: Value = c
        .get(format!("{base}/records/Contact"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 9);
}
