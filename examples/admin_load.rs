//! Admin writes under data-plane load (issue: control plane benchmarks). Expects a running
//! gateway (see loadtest/admin.sh): paces data-plane requests at a fixed rate and reports
//! their p50/p99 with no admin traffic, then during a burst of 1000 key creations (and
//! the creations' own rate), then during 1000 PATCHes.
//!
//! `cargo run --release --example admin_load -- DATA_URL ADMIN_URL ADMIN_TOKEN DATA_KEY [RATE]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn paced(url: String, key: String, rate: u64, stop: Arc<AtomicBool>) -> (Vec<f64>, u64) {
    let client = reqwest::Client::new();
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = vec![];
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (client, url, key, lat, errors) = (
            client.clone(),
            url.clone(),
            key.clone(),
            lat.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .post(&url)
                .bearer_auth(&key)
                .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    lat.lock().unwrap_or_else(|p| p.into_inner()).push(t.elapsed().as_secs_f64() * 1000.0);
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let v = lat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (v, errors.load(Ordering::Relaxed))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn phase<F, Fut>(name: &str, data: &str, key: &str, rate: u64, admin: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<(usize, Duration)>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(paced(data.to_string(), key.to_string(), rate, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = admin().await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, errors) = load.await.unwrap_or_default();
    let writes = writes.map_or("-".to_string(), |(n, d)| {
        format!(
            "{n} in {:.2} s = {:.0}/s",
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64()
        )
    });
    println!(
        "| {name:<28} | {:>6} | {:>7.2} | {:>7.2} | {errors:>6} | {writes} |",
        lat.len(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: admin_load DATA_URL ADMIN_URL ADMIN_TOKEN DATA_KEY [RATE]");
        std::process::exit(2);
    }
    let (data, admin, token, key) = (
        args[1].clone(),
        args[2].clone(),
        args[3].clone(),
        args[4].clone(),
    );
    let rate: u64 = args.get(5).and_then(|r| r.parse().ok()).unwrap_or(500);
    let client = reqwest::Client::new();
    println!("data plane paced at {rate} req/s; latencies in ms");
    println!();
    println!(
        "| phase                        | n      | p50     | p99     | errors | admin writes |"
    );
    println!(
        "|------------------------------|--------|---------|---------|--------|--------------|"
    );
    phase("no admin traffic", &data, &key, rate, || async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        None
    })
    .await;
    let ids = Arc::new(Mutex::new(Vec::new()));
    let (c, a, t, ids2) = (client.clone(), admin.clone(), token.clone(), ids.clone());
    phase("1000 creates (4 at a time)", &data, &key, rate, || async move {
        let started = Instant::now();
        let mut tasks = vec![];
        for w in 0..4 {
            let (c, a, t, ids) = (c.clone(), a.clone(), t.clone(), ids2.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..250 {
                    let r = c
                        .post(format!("{a}/v1/keys"))
                        .bearer_auth(&t)
                        .json(&serde_json::json!({"name": format!("load-{w}-{i}"), "group": "grp_load", "rpm": 1000}))
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if let Ok(v) = r.json::<serde_json::Value>().await {
                            if let Some(id) = v["id"].as_str() {
                                ids.lock().unwrap_or_else(|p| p.into_inner()).push(id.to_string());
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Some((ids2.lock().unwrap_or_else(|p| p.into_inner()).len(), started.elapsed()))
    })
    .await;
    let list = ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (c, a, t) = (client.clone(), admin.clone(), token.clone());
    phase(
        "1000 PATCHes (4 at a time)",
        &data,
        &key,
        rate,
        || async move {
            let started = Instant::now();
            let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = vec![];
            for chunk in list.chunks(list.len().div_ceil(4).max(1)) {
                let (c, a, t, chunk, ok) =
                    (c.clone(), a.clone(), t.clone(), chunk.to_vec(), ok.clone());
                tasks.push(tokio::spawn(async move {
                    for id in chunk {
                        let r = c
                            .patch(format!("{a}/v1/keys/{id}"))
                            .bearer_auth(&t)
                            .json(&serde_json::json!({"rpm": 500, "tags": {"phase": "patched"}}))
                            .send()
                            .await;
                        if r.is_ok_and(|r| r.status().is_success()) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            Some((ok.load(Ordering::Relaxed), started.elapsed()))
        },
    )
    .await;
}
