//! Lookup benchmarks: they print figures, they assert nothing about speed.
//!
//!   cargo bench -p natterbox-engine --bench lookup
//!
//! Salesforce is the org emulator, in this process (its threads are not counted in the CPU
//! figures: only the engine's `sf-runtime` threads and the calling thread are).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use natterbox_common::config::Config;
use natterbox_common::handoff::{self, TokenFile};
use natterbox_common::salesforce::oauth::TokenResponse;
use natterbox_engine::cache::{CacheKey, CachePolicy, LookupCache};
use natterbox_engine::outcome::{Outcome, PackedVars, VarNames};
use natterbox_engine::{Engine, LookupRequest, LookupStatus};
use sf_emulator::{Emulator, EmulatorOptions, FaultRule};

fn token(instance_url: &str) -> TokenResponse {
    reqwest::blocking::Client::new()
        .post(format!("{instance_url}/services/oauth2/token"))
        .basic_auth("3MVG9Emu.CC.ClientId.natterbox", Some("cc-app-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    /// In this process; `None` when BENCH_EMULATOR_INSTANCE names one running elsewhere.
    emulator: Option<Emulator>,
    engine: Engine,
    token: TokenResponse,
}

fn setup(max_concurrent: usize, timeout_ms: u64) -> Setup {
    let threads: usize = std::env::var("BENCH_RUNTIME_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let (emulator, instance_url) = match std::env::var("BENCH_EMULATOR_INSTANCE") {
        Ok(url) => (None, url),
        Err(_) => {
            let emulator = Emulator::start_background(EmulatorOptions::default_seed()).unwrap();
            let url = emulator.instance_url();
            (Some(emulator), url)
        }
    };
    let token = token(&instance_url);
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    handoff::write(
        &tokens,
        &TokenFile {
            org: "acme".into(),
            access_token: token.access_token.clone(),
            instance_url: token.instance_url.clone(),
            issued_at_ms: 0,
            generation: 1,
        },
        None,
    )
    .unwrap();
    let xml = format!(
        r#"<configuration name="natterbox_sf.conf"><settings>
             <param name="token-dir" value="{}"/><param name="spool-dir" value="{}"/>
             <param name="event-socket" value="{}"/><param name="lookup-timeout-ms" value="{timeout_ms}"/>
             <param name="cache-max-entries" value="2000000"/><param name="runtime-threads" value="{threads}"/>
           </settings><orgs><org name="acme" login-url="{}" allow-insecure-http="true" max-concurrent="{max_concurrent}">
             <profile name="default">
               <object name="Contact" fields="Id,Name,OwnerId,Owner.Extension"><map field="Owner.Extension" variable="sf_owner_extension"/></object>
               <object name="Lead" fields="Id,Name,OwnerId,Company"/>
               <object name="Account" fields="Id,Name,OwnerId"/>
             </profile>
             <query name="open_case" soql="SELECT Id, CaseNumber, Status, OwnerId FROM Case WHERE ContactId = :contact_id LIMIT 1"/>
             </org></orgs></configuration>"#,
        tokens.display(),
        dir.path().join("spool").display(),
        dir.path().join("events.sock").display(),
        instance_url
    );
    let engine = Engine::start(Config::parse(&xml).unwrap()).unwrap();
    Setup {
        _dir: dir,
        emulator,
        engine,
        token,
    }
}

fn request(number: &str) -> LookupRequest {
    LookupRequest {
        org: Some("acme".into()),
        number: number.into(),
        profile: None,
        timeout: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_micros(10) {
        format!("{} ns", d.as_nanos())
    } else if d < Duration::from_millis(10) {
        format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

/// Time on CPU (user + system, from the scheduler's own accounting in nanoseconds:
/// /proc/<tid>/schedstat) of this process's threads whose name is one of `names`, plus the
/// calling thread.
fn cpu_of_threads(names: &[&str]) -> Duration {
    let me: i32 = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|f| f.to_string_lossy().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut total_ns = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let tid: i32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if tid != me && !names.contains(&comm.trim()) {
            continue;
        }
        let schedstat = std::fs::read_to_string(entry.path().join("schedstat")).unwrap_or_default();
        total_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(total_ns)
}

/// The same threads' user and kernel time (clock ticks, /proc/<tid>/stat fields 14 and 15:
/// the split of `cpu_of_threads`' total, sampled at the tick) and minor page faults (field 10).
fn user_kernel_ticks_and_faults(names: &[&str]) -> (u64, u64, u64) {
    let me = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let (mut user, mut kernel, mut faults) = (0u64, 0u64, 0u64);
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if entry.file_name().to_string_lossy() != me && !names.contains(&comm.trim()) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command name, which may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15; `fields[0]` is field 3.
        user += fields
            .get(11)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        kernel += fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        faults += fields
            .get(7)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (user, kernel, faults)
}

/// On-CPU nanoseconds (schedstat) of this process's threads, summed by thread name.
fn cpu_by_thread_name() -> std::collections::HashMap<String, u64> {
    let mut by_name = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let schedstat = std::fs::read_to_string(entry.path().join("schedstat")).unwrap_or_default();
        let ns: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        *by_name.entry(comm.trim().to_string()).or_insert(0) += ns;
    }
    by_name
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn hit_latency(s: &Setup) {
    let req = request("+14155550123");
    assert_eq!(s.engine.lookup_blocking(&req).status, LookupStatus::Found);
    for _ in 0..10_000 {
        s.engine.lookup_blocking(&req);
    }
    let n = 200_000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let answer = s.engine.lookup_blocking(&req);
        samples.push(t.elapsed());
        debug_assert_eq!(answer.status, LookupStatus::Found);
    }
    samples.sort();
    println!(
        "| cache hit through the engine (1 thread, {n} lookups, incl. parsing the number) | p50 {} | p99 {} | p99.9 {} |",
        fmt(percentile(&samples, 0.5)),
        fmt(percentile(&samples, 0.99)),
        fmt(percentile(&samples, 0.999))
    );
}

/// A cached named query's hit next to a cached lookup's, in alternating rounds on one thread
/// (the same host load for both): the query's key is its bound values (an 18-character id).
fn query_hit_latency(s: &Setup) {
    let lookup = request("+14155550123");
    let found = s.engine.lookup_blocking(&lookup);
    assert_eq!(found.status, LookupStatus::Found);
    let contact = found
        .outcome
        .as_ref()
        .and_then(|o| o.vars.get("sf_record_id"))
        .unwrap()
        .to_string();
    let query = natterbox_engine::QueryRequest {
        org: Some("acme".into()),
        name: "open_case".into(),
        kind: None,
        timeout: None,
    };
    let value_of = |_: &natterbox_common::named_query::Bind| Some(contact.clone());
    let first = s.engine.query_blocking(&query, &value_of);
    assert_eq!(first.status, LookupStatus::Found, "{:?}", first.detail);
    let n = 200_000;
    let (mut lookups, mut queries) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for round in 0..(n / 1000 + 10) {
        for _ in 0..1000 {
            let t = Instant::now();
            let answer = s.engine.query_blocking(&query, &value_of);
            let took = t.elapsed();
            debug_assert_eq!(answer.source, Some(natterbox_engine::Source::Cache));
            let t = Instant::now();
            s.engine.lookup_blocking(&lookup);
            let took_lookup = t.elapsed();
            // The first ten rounds warm up.
            if round >= 10 {
                queries.push(took);
                lookups.push(took_lookup);
            }
        }
    }
    for (name, samples) in [("named query", &mut queries), ("lookup", &mut lookups)] {
        samples.sort();
        println!(
            "| cache hit, {name} (1 thread, {} hits, alternating) | p50 {} | p99 {} | p99.9 {} |",
            samples.len(),
            fmt(percentile(samples, 0.5)),
            fmt(percentile(samples, 0.99)),
            fmt(percentile(samples, 0.999))
        );
    }
}

/// What parsing a caller number costs (what the parse memo saves a hit) and what counting a
/// finished lookup in the metrics costs (what every lookup pays).
fn hit_parts() {
    let country = natterbox_common::phone::Country::parse("US").unwrap();
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            natterbox_common::phone::CallerNumber::parse(
                std::hint::black_box("+14155550123"),
                country,
            )
            .is_ok(),
        );
    }
    let parse = t.elapsed() / n;
    let metrics = natterbox_engine::metrics::LookupMetrics::default();
    let n = 10_000_000;
    let t = Instant::now();
    for _ in 0..n {
        metrics.record(
            LookupStatus::Found,
            Some(natterbox_engine::Source::Cache),
            std::hint::black_box(Duration::from_nanos(210)),
        );
    }
    let record = t.elapsed() / n;
    println!(
        "| parts of a hit, alone | parsing \"+14155550123\" {} (saved by the parse memo) | counting the lookup in the metrics {} | |",
        fmt(parse),
        fmt(record)
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Storm {
    None,
    /// Inserts of new numbers as fast as one thread can: every insert takes the writers' lock
    /// and evicts.
    NewKeys,
    /// As NewKeys, and every other write revalidates one of the entries being read with the
    /// answer it already holds (a refresher going over the hot set continuously).
    NewAndHotKeys,
    /// As NewAndHotKeys, but every revalidation brings a changed answer, so it replaces the
    /// entry (data changing in Salesforce continuously: the worst case).
    NewAndChangedHotKeys,
    /// NewAndChangedHotKeys at 50 000 writes/s: far above what Salesforce can answer.
    Paced,
}

/// Hits per second of one reader thread over `slice`, with `storm` on another thread; and the
/// storm's writes per second.
fn hit_throughput(s: &Setup, storm: Storm, slice: Duration) -> (f64, f64) {
    // 1000 cached numbers.
    let numbers = hot_numbers();
    for n in &numbers {
        s.engine.lookup_blocking(&request(n));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let inserts = Arc::new(AtomicU64::new(0));
    let scope = s.engine.scope_of("acme", "default").unwrap();
    std::thread::scope(|scope_threads| {
        let reader = {
            let (stop, ops) = (stop.clone(), ops.clone());
            let numbers = &numbers;
            let engine = &s.engine;
            scope_threads.spawn(move || read_hot_numbers(engine, numbers, 0, &stop, &ops))
        };
        if storm != Storm::None {
            let (stop, inserts) = (stop.clone(), inserts.clone());
            let cache = s.engine.cache();
            scope_threads.spawn(move || {
                // Writers and refreshers: new answers for the same numbers (replacing entries)
                // and for new numbers (inserting, evicting), as fast as one core allows. Each
                // answer is its own allocation, as each answer from Salesforce is.
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let number = if storm != Storm::NewKeys && n.is_multiple_of(2) {
                        12125550000 + (n / 2) % 1000
                    } else {
                        19995550000 + n
                    };
                    let outcome = if matches!(storm, Storm::NewAndChangedHotKeys | Storm::Paced)
                        && number < 19995550000
                    {
                        // A different answer from the one cached (they alternate).
                        Outcome {
                            match_count: 1 + (n / 2000) as u32 % 2,
                            ..Outcome::not_found()
                        }
                    } else {
                        Outcome::not_found()
                    };
                    cache.insert(CacheKey { scope, number }, Arc::new(outcome));
                    n += 1;
                    if storm == Storm::Paced && n.is_multiple_of(50) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                inserts.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(slice);
        stop.store(true, Ordering::Relaxed);
        let _ = reader;
    });
    (
        ops.load(Ordering::Relaxed) as f64 / slice.as_secs_f64(),
        inserts.load(Ordering::Relaxed) as f64 / slice.as_secs_f64(),
    )
}

/// Hit throughput with `storm` against hit throughput without, measured in alternating slices
/// (the host's own noise drifts over seconds); prints both and the median of the pairs' ratios.
fn storm_ratio(s: &Setup, storm: Storm) {
    const PAIRS: usize = 6;
    let slice = Duration::from_millis(500);
    let (mut alone, mut with, mut writes, mut ratios) = (vec![], vec![], vec![], vec![]);
    for _ in 0..PAIRS {
        let (a, _) = hit_throughput(s, Storm::None, slice);
        let (b, w) = hit_throughput(s, storm, slice);
        alone.push(a);
        with.push(b);
        writes.push(w);
        ratios.push(b / a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (min, max) = (
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(f64::MIN, f64::max),
    );
    let ratio = median(&mut ratios);
    let writes = median(&mut writes);
    let what = match storm {
        Storm::None => unreachable!("a storm is needed"),
        Storm::NewKeys => format!(
            "a writer inserting new numbers at full speed, evicting once the cache is full ({:.2} M inserts/s)",
            writes / 1e6
        ),
        Storm::NewAndHotKeys => format!(
            "a writer/refresher at full speed, half its writes revalidating the entries being read with the answers they hold ({:.2} M writes/s)",
            writes / 1e6
        ),
        Storm::NewAndChangedHotKeys => format!(
            "a writer/refresher at full speed, half its writes replacing the entries being read with changed answers ({:.2} M writes/s)",
            writes / 1e6
        ),
        Storm::Paced => format!(
            "the changing writer/refresher paced ({:.0} writes/s)",
            writes
        ),
    };
    println!(
        "| hit throughput of 1 reader with {what} | {:.2} M lookups/s (without: {:.2} M/s) | ratio {:.2} | (median of {PAIRS} alternating 0.5 s pairs; {:.2}–{:.2}) |",
        median(&mut with) / 1e6,
        median(&mut alone) / 1e6,
        ratio,
        min,
        max
    );
}

/// The 1000 numbers the hit-throughput readers look up (cached by the first look).
fn hot_numbers() -> Vec<String> {
    (0..1000).map(|i| format!("+1212555{:04}", i)).collect()
}

/// One FreeSWITCH thread's hits: the hot numbers in a stride from `start` until `stop`, counted
/// into `ops`.
fn read_hot_numbers(
    engine: &Engine,
    numbers: &[String],
    start: usize,
    stop: &AtomicBool,
    ops: &AtomicU64,
) {
    let mut i = start;
    let mut local = 0u64;
    while !stop.load(Ordering::Relaxed) {
        engine.lookup_blocking(&request(&numbers[i % numbers.len()]));
        i = i.wrapping_add(7);
        local += 1;
    }
    ops.fetch_add(local, Ordering::Relaxed);
}

/// Every storm's ratio.
fn storm_ratios(s: &Setup) {
    for storm in [
        Storm::NewKeys,
        Storm::NewAndHotKeys,
        Storm::NewAndChangedHotKeys,
        Storm::Paced,
    ] {
        storm_ratio(s, storm);
    }
}

/// Two FreeSWITCH threads hitting the same hot numbers at once (this machine has 2 cores).
fn hit_throughput_two_readers(s: &Setup) {
    let numbers = hot_numbers();
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for offset in 0..2usize {
            let (stop, ops, numbers, engine) = (&stop, &ops, &numbers, &s.engine);
            scope.spawn(move || read_hot_numbers(engine, numbers, offset, stop, ops));
        }
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
    });
    println!(
        "| hit throughput, 2 reader threads on the same 1000 numbers, no writer | {:.2} M lookups/s | | |",
        ops.load(Ordering::Relaxed) as f64 / 3e6
    );
}

fn miss_cpu(s: &Setup) {
    s.engine.cache().flush(None);
    let n = 3000u64;
    // Warm the connection pool.
    s.engine.lookup_blocking(&request("+13105550000"));
    let before = cpu_of_threads(&["sf-runtime"]);
    let ticks_before = user_kernel_ticks_and_faults(&["sf-runtime"]);
    let t = Instant::now();
    for i in 0..n {
        // Distinct numbers nobody has: the full miss path, a search that finds nothing.
        let answer = s
            .engine
            .lookup_blocking(&request(&format!("+1310555{:04}", 1 + i)));
        assert_eq!(answer.status, LookupStatus::NotFound, "{answer:?}");
    }
    let wall = t.elapsed();
    let cpu = cpu_of_threads(&["sf-runtime"]) - before;
    let ticks_after = user_kernel_ticks_and_faults(&["sf-runtime"]);
    let (user, kernel) = (
        ticks_after.0 - ticks_before.0,
        ticks_after.1 - ticks_before.1,
    );
    let user_share = user as f64 / (user + kernel).max(1) as f64;
    println!(
        "| miss path CPU per lookup (engine threads + caller; emulator at zero latency, {n} sequential misses) | {} | wall {} per lookup | |",
        fmt(cpu / n as u32),
        fmt(wall / n as u32)
    );
    println!(
        "|   of which user / kernel (tick-sampled split); minor page faults per lookup | {} | {} | {:.1} |",
        fmt(cpu.mul_f64(user_share) / n as u32),
        fmt(cpu.mul_f64(1.0 - user_share) / n as u32),
        (ticks_after.2 - ticks_before.2) as f64 / n as f64
    );
}

fn concurrent_misses(max_concurrent: usize, count: usize, latency_ms: u64) {
    let s = setup(max_concurrent, 30_000);
    let emulator = s.emulator.as_ref().expect("an in-process emulator");
    emulator.admin().add_fault(FaultRule {
        path_prefix: "/services/data".into(),
        latency_ms,
        ..FaultRule::default()
    });
    // A running switch has its connections open: one unmeasured round opens them.
    run_concurrent(&s.engine, count, 5000);
    // FreeSWITCH's way: one thread per call. The span includes the OS waking `count` threads.
    let threads = run_concurrent(&s.engine, count, 0);
    report_concurrent(
        "one thread per lookup",
        &threads,
        max_concurrent,
        count,
        latency_ms,
    );
    // All `count` lookups issued at one instant (the engine's async entry, one thread).
    let cpu_before = cpu_by_thread_name();
    let issued = run_concurrent_async(&s.engine, count, 2000);
    let cpu_after = cpu_by_thread_name();
    report_concurrent("issued at once", &issued, max_concurrent, count, latency_ms);
    let spent = |engine: bool| -> Duration {
        cpu_after
            .iter()
            .filter(|(name, _)| {
                (name.as_str() == "sf-runtime" || name.starts_with("lookup-")) == engine
            })
            .map(|(name, ns)| Duration::from_nanos(ns - cpu_before.get(name).copied().unwrap_or(0)))
            .sum()
    };
    println!(
        "|   CPU during that run: engine (its runtime and the issuing thread) / Salesforce stand-in | {} / {} | {} per lookup / {} per search | |",
        fmt(spent(true)),
        fmt(spent(false)),
        fmt(spent(true) / count as u32),
        fmt(spent(false) / count as u32)
    );
    println!(
        "|   (Salesforce requests seen, warm-up round included: {}; peak concurrent at Salesforce: {}) | | | |",
        emulator.admin().endpoint_count("search"),
        emulator.admin().peak_in_flight()
    );
}

fn report_concurrent(
    how: &str,
    spans: &[(Instant, Instant)],
    max_concurrent: usize,
    count: usize,
    latency_ms: u64,
) {
    let first = spans.iter().map(|(start, _)| *start).min().unwrap();
    let last_start = spans.iter().map(|(start, _)| *start).max().unwrap();
    let last = spans.iter().map(|(_, end)| *end).max().unwrap();
    let wall = last - first;
    let mut sorted: Vec<Duration> = spans.iter().map(|(start, end)| *end - *start).collect();
    sorted.sort();
    let throughput = count as f64 / wall.as_secs_f64();
    let ideal = max_concurrent.min(count) as f64 / (latency_ms as f64 / 1000.0);
    println!(
        "| {count} distinct concurrent misses ({how}), {latency_ms} ms Salesforce latency, cap {max_concurrent} | all done in {} (last issued at +{}) | each p50 {} p99 {} max {} | {:.0}/s = {:.0} % of cap ÷ latency |",
        fmt(wall),
        fmt(last_start - first),
        fmt(percentile(&sorted, 0.5)),
        fmt(percentile(&sorted, 0.99)),
        fmt(*sorted.last().unwrap()),
        throughput,
        100.0 * throughput / ideal
    );
}

/// `count` lookups of distinct numbers issued from one thread at one instant, awaited
/// together; when each started and ended.
fn run_concurrent_async(
    engine: &Engine,
    count: usize,
    first_number: usize,
) -> Vec<(Instant, Instant)> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let requests: Vec<LookupRequest> = (0..count)
        .map(|i| request(&format!("+1646555{:04}", first_number + i)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut pending: FuturesUnordered<_> = requests
            .iter()
            .map(|req| async move {
                let t = Instant::now();
                let answer = engine.lookup(req).await;
                assert!(
                    matches!(answer.status, LookupStatus::NotFound | LookupStatus::Found),
                    "{answer:?}"
                );
                (t, Instant::now())
            })
            .collect();
        let mut spans = Vec::with_capacity(count);
        while let Some(span) = pending.next().await {
            spans.push(span);
        }
        spans
    })
}

/// `count` threads each look a distinct number up at once; returns when each started and ended
/// (after the barrier: spawning the threads is not part of it).
fn run_concurrent(engine: &Engine, count: usize, first_number: usize) -> Vec<(Instant, Instant)> {
    let barrier = Arc::new(Barrier::new(count));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        barrier.wait();
                        let t = Instant::now();
                        let answer = engine
                            .lookup_blocking(&request(&format!("+1646555{:04}", first_number + i)));
                        assert!(
                            matches!(answer.status, LookupStatus::NotFound | LookupStatus::Found),
                            "{answer:?}"
                        );
                        (t, Instant::now())
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn rss_with_a_million_entries() {
    let cache = LookupCache::new(CachePolicy {
        max_entries: 1_000_000,
        ttl: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(60),
        max_stale: Duration::from_secs(3600),
    });
    let names = VarNames::new(["sf_owner_extension", "sf_account_name"]);
    let before = rss_bytes();
    for i in 0..1_000_000u64 {
        // A typical found answer: record id and type, name, owner, two mapped fields.
        let mut vars = PackedVars::builder(&names);
        vars.push("sf_record_type", "Contact")
            .push("sf_record_id", &format!("003Em00000{:08}AAA", i))
            .push("sf_record_name", &format!("Customer Number {i}"))
            .push("sf_owner_id", "005Em0000000001AAA")
            .push("sf_owner_extension", "1001")
            .push("sf_account_name", "Acme Corporation");
        let outcome = Arc::new(Outcome {
            status: LookupStatus::Found,
            match_count: 1,
            vars: vars.build(),
        });
        cache.insert(
            CacheKey {
                scope: natterbox_engine::cache::ScopeId(1),
                number: 14150000000 + i,
            },
            outcome,
        );
    }
    let after = rss_bytes();
    println!(
        "| RSS growth with 1M cached entries (typical found answers, 6 variables each) | {:.0} MB | {:.0} bytes per entry | |",
        (after.saturating_sub(before)) as f64 / 1e6,
        (after.saturating_sub(before)) as f64 / 1_000_000.0
    );
    drop(cache);
}

fn fresh_http_per_call(s: &Setup) {
    // What dialplan scripts do today: a new HTTP client and request per call, no cache.
    let sosl = "FIND {4155550123} IN PHONE FIELDS RETURNING Contact(Id, Name, OwnerId, Owner.Extension, Phone, MobilePhone LIMIT 20)";
    let url = format!("{}/services/data/v68.0/search/", s.token.instance_url);
    let n = 500;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let client = reqwest::blocking::Client::new();
        let response = client
            .get(&url)
            .query(&[("q", sosl)])
            .bearer_auth(&s.token.access_token)
            .send()
            .unwrap();
        assert!(response.status().is_success());
        let _: serde_json::Value = response.json().unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "| for comparison: a fresh HTTP request per call, no cache (emulator on loopback, zero latency) | p50 {} | p99 {} | |",
        fmt(percentile(&samples, 0.5)),
        fmt(percentile(&samples, 0.99))
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if std::env::var("BENCH_EMULATOR_INSTANCE").is_ok() {
        // Salesforce in another process (pin it to another core): only the miss path's CPU.
        let s = setup(50, 5000);
        miss_cpu(&s);
        return;
    }
    if std::env::var("BENCH_ONLY_STORM").is_ok() {
        // Only hit throughput with and without the writer storms (for repeated runs).
        let s = setup(50, 5000);
        storm_ratios(&s);
        return;
    }
    if std::env::var("BENCH_ONLY_CONCURRENT").is_ok() {
        // Only the 1000 concurrent misses, cap 1000 (for repeated runs).
        concurrent_misses(1000, 1000, 100);
        return;
    }
    if std::env::var("BENCH_ONLY_HIT").is_ok() {
        // Only the hit path's latency, three runs (for before/after comparisons), and what two
        // of its parts cost alone.
        let s = setup(50, 5000);
        for _ in 0..3 {
            hit_latency(&s);
        }
        hit_parts();
        return;
    }
    if std::env::var("BENCH_ONLY_QUERY_HIT").is_ok() {
        // A cached named query's hit next to a cached lookup's, three runs.
        let s = setup(50, 5000);
        for _ in 0..3 {
            query_hit_latency(&s);
        }
        return;
    }
    if let Ok(n) = std::env::var("BENCH_ONLY_MISS") {
        // For profilers (callgrind): only the miss path, n lookups.
        let s = setup(50, 5000);
        s.engine.lookup_blocking(&request("+13105550000"));
        for i in 0..n.parse::<u64>().unwrap_or(300) {
            s.engine
                .lookup_blocking(&request(&format!("+1310555{:04}", 1 + i)));
        }
        return;
    }
    println!("| measurement | result | | |");
    println!("|---|---|---|---|");
    let s = setup(50, 5000);
    hit_latency(&s);
    let (alone, _) = hit_throughput(&s, Storm::None, Duration::from_secs(3));
    println!(
        "| hit throughput, 1 reader thread, no writer | {:.2} M lookups/s | | |",
        alone / 1e6
    );
    hit_throughput_two_readers(&s);
    storm_ratios(&s);
    miss_cpu(&s);
    fresh_http_per_call(&s);
    drop(s);
    concurrent_misses(1000, 1000, 100);
    concurrent_misses(50, 1000, 100);
    rss_with_a_million_entries();
}
