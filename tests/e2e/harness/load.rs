//! Steady chat traffic from several clients, recorded, until stopped.

use super::http::{client, CHAT};
use super::key;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Chat completions from `workers` clients with `key(1)` until stopped: each completed
/// request is recorded with the time it completed and the tokens the provider reported.
/// `pause` holds the load without stopping it.
pub struct ChatLoad {
    pub done: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u64)>>>,
    pub pause: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ChatLoad {
    pub fn start(addr: SocketAddr, workers: usize) -> ChatLoad {
        use std::sync::atomic::Ordering;
        let (done, pause, stop) =
            <(std::sync::Arc<_>, std::sync::Arc<_>, std::sync::Arc<_>)>::default();
        let mut load = ChatLoad {
            done,
            pause,
            stop,
            tasks: vec![],
        };
        for _ in 0..workers {
            let (done, pause, stop) = (load.done.clone(), load.pause.clone(), load.stop.clone());
            load.tasks.push(tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    if pause.load(Ordering::Relaxed) {
                        // Held: idle until resumed.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    let r = c
                        .post(format!("http://{addr}{CHAT}"))
                        .bearer_auth(key(1))
                        .header("x-mock-output-tokens", "5")
                        .json(&serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            if let Ok(v) = r.json::<serde_json::Value>().await {
                                let t = v["usage"]["total_tokens"].as_u64().unwrap_or(0);
                                done.lock().unwrap().push((Instant::now(), t));
                            }
                        }
                        // The gateway is down (killed, restarting): back off a little.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        load
    }

    /// Stops the clients and waits for them.
    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}
