//! A worker's log lines on their way to the service: buffered, posted
//! every few hundred milliseconds (or when a quarter MiB has piled up) to
//! `POST /v1/jobs/{id}/log`, echoed on stderr (the cluster's own output).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Service;
use crate::process::LineSink;

const EVERY: Duration = Duration::from_millis(300);
const FULL: usize = 256 << 10;

struct State {
    buf: Vec<u8>,
    done: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Sends a job's log lines to the service.
#[derive(Clone)]
pub struct LogPoster {
    inner: Arc<Inner>,
}

impl LogPoster {
    pub fn start(svc: Service, job: String, token: String) -> LogPoster {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                buf: Vec::new(),
                done: false,
            }),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        });
        let i = inner.clone();
        let t = std::thread::spawn(move || {
            let url = svc.url(&format!("/v1/jobs/{job}/log"));
            loop {
                let (chunk, done) = {
                    let Ok(mut st) = i.state.lock() else { return };
                    if st.buf.is_empty() && !st.done {
                        st = match i.wake.wait_timeout(st, EVERY) {
                            Ok((g, _)) => g,
                            Err(_) => return,
                        };
                    }
                    (std::mem::take(&mut st.buf), st.done)
                };
                if !chunk.is_empty() {
                    // a line lost here is lost from the log only, never the build
                    for attempt in 0..3 {
                        let r = svc
                            .http
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "text/plain; charset=utf-8")
                            .body(chunk.clone())
                            .send();
                        match r {
                            Ok(r) if r.status().is_success() => break,
                            Ok(r) if r.status().is_client_error() => break,
                            _ => std::thread::sleep(Duration::from_millis(200 << attempt)),
                        }
                    }
                }
                if done {
                    return;
                }
            }
        });
        if let Ok(mut th) = inner.thread.lock() {
            *th = Some(t);
        }
        LogPoster { inner }
    }

    /// Sends what is left and stops.
    pub fn finish(&self) {
        if let Ok(mut st) = self.inner.state.lock() {
            st.done = true;
        }
        self.inner.wake.notify_all();
        let t = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl LogPoster {
    /// Starts a step: the one kind of line the service reads as a step.
    pub fn step(&self, name: &str) {
        self.push(&format!("==> {name}"));
    }

    fn push(&self, s: &str) {
        eprintln!("{s}");
        let Ok(mut st) = self.inner.state.lock() else {
            return;
        };
        st.buf.extend_from_slice(s.as_bytes());
        st.buf.push(b'\n');
        if st.buf.len() >= FULL {
            self.inner.wake.notify_all();
        }
    }
}

/// Everything else — the build's own output, git's — can never pass for a
/// step: a line that looks like one is indented.
impl LineSink for LogPoster {
    fn line(&self, s: &str) {
        for l in s.split('\n') {
            if l.starts_with("==> ") {
                self.push(&format!(" {l}"));
            } else {
                self.push(l);
            }
        }
    }
}
