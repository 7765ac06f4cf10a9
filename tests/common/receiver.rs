//! Servers the tests talk to: a small HTTP receiver (webhooks), and the SMTP
//! sink of `scripts/smtp-sink.sh`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answered: u16,
}

/// A tiny HTTP/1.1 server: answers the given statuses in turn, then 200.
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub async fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Request>>> = Arc::default();
        let plan: Arc<Mutex<VecDeque<u16>>> =
            Arc::new(Mutex::new(statuses.iter().copied().collect()));
        let g = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (got, plan) = (g.clone(), plan.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_string();
                    let path = first.next().unwrap_or("").to_string();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let status = plan.lock().unwrap().pop_front().unwrap_or(200);
                    got.lock().unwrap().push(Request {
                        method,
                        path,
                        headers,
                        body: buf[head_end..head_end + len].to_vec(),
                        answered: status,
                    });
                    let text = match status {
                        200 => "ok",
                        404 => "no_service",
                        _ => "boom",
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Receiver { port, got }
    }

    /// A webhook URL on this receiver with a token in its path, as Slack's have.
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/services/T0001/B0002/SECRETTOKEN",
            self.port
        )
    }

    pub fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }
}

/// The SMTP sink's address and mail folder; `None` (skip) without it, except in CI.
pub fn sink() -> Option<(String, PathBuf)> {
    match (
        std::env::var("CLOUDRAID_TEST_SMTP"),
        std::env::var("CLOUDRAID_TEST_SMTP_DIR"),
    ) {
        (Ok(addr), Ok(dir)) => Some((addr, PathBuf::from(dir))),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the email tests: scripts/smtp-sink.sh start; eval \"$(scripts/smtp-sink.sh env)\""
            );
            eprintln!("skipped: the SMTP sink is not running (scripts/smtp-sink.sh start; eval \"$(scripts/smtp-sink.sh env)\")");
            None
        }
    }
}
