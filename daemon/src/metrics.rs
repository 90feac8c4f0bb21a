//! Prometheus metrics of berthd: a few counters and gauges, rendered in the text exposition
//! format and served over plain HTTP on `--metrics-addr` (only when asked for). The server
//! answers `GET /metrics` and nothing else; it never reads a request body.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters updated where things happen; gauges are sampled when scraped.
#[derive(Debug, Default)]
pub struct Metrics {
    pub proposals: Counter,
    pub refused: Counter,
    pub reconciles: Counter,
    pub status_reports: Counter,
    pub api_requests: Counter,
}

/// Values read at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub apps: u64,
    pub tasks: u64,
    pub tasks_running: u64,
    pub raft_applied: u64,
    pub raft_term: u64,
    pub resident_bytes: u64,
}

impl Metrics {
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        let counters = [
            (
                "berth_raft_proposals_total",
                "Commands proposed to the raft log.",
                self.proposals.get(),
            ),
            (
                "berth_raft_refused_total",
                "Commands the store refused.",
                self.refused.get(),
            ),
            (
                "berth_controller_passes_total",
                "Orchestrator and scheduler passes that changed something.",
                self.reconciles.get(),
            ),
            (
                "berth_task_status_reports_total",
                "Task status reports received from agents.",
                self.status_reports.get(),
            ),
            (
                "berth_api_requests_total",
                "gRPC requests served.",
                self.api_requests.get(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let gauges = [
            ("berth_apps", "Deployed apps.", gauges.apps),
            ("berth_tasks", "Tasks in the store.", gauges.tasks),
            (
                "berth_tasks_running",
                "Tasks observed running.",
                gauges.tasks_running,
            ),
            (
                "berth_raft_applied_index",
                "Last applied raft index.",
                gauges.raft_applied,
            ),
            ("berth_raft_term", "Current raft term.", gauges.raft_term),
            (
                "berth_process_resident_memory_bytes",
                "Resident memory of berthd.",
                gauges.resident_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Resident set size of this process (`/proc/self/statm`).
pub fn resident_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page)
        .unwrap_or(0)
}

/// Serves `GET /metrics` on `listener` until the task is dropped; `sample` gives the gauges.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    sample: Arc<dyn Fn() -> Gauges + Send + Sync>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let sample = sample.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path_ok = request.starts_with("GET /metrics ") || request.starts_with("GET / ");
            let response = if path_ok {
                let body = metrics.render(sample());
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let metrics = Metrics::default();
        metrics.proposals.add(3);
        let text = metrics.render(Gauges {
            tasks: 2,
            ..Gauges::default()
        });
        assert!(
            text.contains(
                "# TYPE berth_raft_proposals_total counter\nberth_raft_proposals_total 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("berth_tasks 2\n"), "{text}");
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.api_requests.inc();
        let server = tokio::spawn(serve(listener, metrics, Arc::new(Gauges::default)));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("berth_api_requests_total 1"),
            "{response}"
        );
        server.abort();
    }
}
