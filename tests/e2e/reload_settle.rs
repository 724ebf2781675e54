//! End to end: a policy file truncated and rewritten slowly, with SIGHUPs arriving
//! meanwhile, is never loaded half-written (docs/operations.md "Reload" `server.reload_settle`, issue 12).

use crate::harness::gateway::fill;
use crate::harness::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SETTLE_MS: u64 = 1000;

fn keys_block(ids: impl Iterator<Item = u32>) -> String {
    ids.map(|n| {
        format!(
            "[[keys]]\nid = \"key_{n}\"\ngroup = \"grp_prod\"\nsha256 = \"{}\"\n\n",
            sha(&key(n))
        )
    })
    .collect()
}

async fn status(g: &GatewayProc, k: &str) -> u16 {
    client()
        .get(g.url("/v1/models"))
        .bearer_auth(k)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_rewritten_file_is_loaded_only_once_it_has_settled() {
    let mock = mock().await;
    let with = |keys: String| {
        basic_policy(mock.addr(), &keys).replace(
            "reload_settle = \"50ms\"",
            &format!("reload_settle = \"{SETTLE_MS}ms\""),
        )
    };
    // Twenty keys; the new file drops key 119 and adds 200 and 201.
    let old = with(keys_block(100..120));
    let new = with(keys_block((100..119).chain([200, 201])));
    let g = Arc::new(start_gateway(&old));
    let new = fill(&new, g.addr, g.dir.path());
    assert_eq!(status(&g, &key(200)).await, 401);

    // Steady traffic with the keys both files have: not one may be refused.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = vec![];
    for t in 0..2u32 {
        let (g, stop, ok, refused) = (g.clone(), stop.clone(), ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                match status(&g, &key(100 + n % 19)).await {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
                n += 2;
            }
        }));
    }

    // Truncate, SIGHUP, then write the new file in small pieces with SIGHUPs in between.
    // Every prefix ending at a key boundary is a valid policy with fewer keys.
    let writer = {
        let g = g.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::create(&g.conf).unwrap();
            g.signal(libc::SIGHUP);
            let bytes = new.as_bytes();
            for (i, piece) in bytes.chunks(200).enumerate() {
                // The slow writer under test: a piece every 30 ms.
                std::thread::sleep(Duration::from_millis(30));
                f.write_all(piece).unwrap();
                f.flush().unwrap();
                if i % 4 == 0 {
                    g.signal(libc::SIGHUP);
                }
                assert_eq!(g.reload_count(), (0, 0), "reloaded while being written");
            }
            Instant::now()
        })
    };
    let written = writer.await.unwrap();
    g.wait_reloads(1, 0);
    let reloaded = Instant::now();
    assert!(
        reloaded.duration_since(written) >= Duration::from_millis(SETTLE_MS - 50),
        "reloaded {:?} after the last write",
        reloaded.duration_since(written)
    );
    let log = g.log_text();
    let line = log.lines().find(|l| l.contains("policy reloaded")).unwrap();
    assert!(line.contains("keys: 2 added, 1 removed"), "{line}");

    // A little more traffic under the new policy, then the verdicts.
    let more = ok.load(Ordering::Relaxed) + 20;
    wait_until(Duration::from_secs(10), "more traffic", || {
        ok.load(Ordering::Relaxed) >= more
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(refused.load(Ordering::Relaxed), 0, "requests refused");
    assert!(ok.load(Ordering::Relaxed) > 40);
    assert_eq!(status(&g, &key(200)).await, 200);
    assert_eq!(status(&g, &key(201)).await, 200);
    assert_eq!(status(&g, &key(119)).await, 401);
    let secrets: Vec<String> = (100..120).chain([200, 201]).map(key).collect();
    assert_no_secret_in_logs(g.dir.path(), &secrets);
}
