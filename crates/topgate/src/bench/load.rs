//! The load engine of `topgate bench`: one task per keep-alive HTTP/1.1 connection (hyper's
//! client connection directly, no pool), each sending its next request as soon as the previous
//! answer is read, recording latency in a per-connection HDR histogram merged at the end.
//!
//! Closed loop on purpose: with N connections there are at most N requests in flight, as with
//! N integrators' workers. Bodies come from a shared [`Source`]; a run ends after a duration or
//! a request count, whichever is given.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, Method, Request, Uri};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use super::requests::{classify, Api};

/// Where a phase sends its requests.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub method: Method,
}

impl Target {
    pub async fn parse(url: &str, method: Method) -> anyhow::Result<Self> {
        let uri: Uri = url.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// URLs are supported"
        );
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
        Ok(Self {
            addr,
            host: authority.to_string(),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
            method,
        })
    }

    /// The same server, another path (the `/healthz` ceiling, the admin API).
    pub fn with_path(&self, path: &str, method: Method) -> Self {
        Self {
            path: path.to_string(),
            method,
            ..self.clone()
        }
    }
}

/// Signs the body of one request index.
pub type Builder = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// The bodies of a phase, by request index.
pub enum Source {
    /// Built before the clock starts.
    Prebuilt(Vec<Bytes>),
    /// Signed on the fly (duration runs, whose count is unknown).
    OnDemand(Builder),
    /// The bodies of indexes `first..first + bodies.len()` built before a duration phase
    /// starts, the rest signed on the fly. Building and signing a pay notice costs the
    /// generator about as much CPU as sending it, and that CPU is taken from the server on a
    /// shared machine; `/healthz` has no body to build, so without this the ratio to the
    /// ceiling would also measure the generator.
    Ahead {
        first: u64,
        bodies: Vec<Bytes>,
        build: Builder,
    },
    Empty,
}

impl Source {
    fn get(&self, i: u64) -> Bytes {
        match self {
            Source::Prebuilt(v) => v[i as usize % v.len().max(1)].clone(),
            Source::OnDemand(f) => f(i),
            Source::Ahead {
                first,
                bodies,
                build,
            } => i
                .checked_sub(*first)
                .and_then(|k| bodies.get(k as usize))
                .cloned()
                .unwrap_or_else(|| build(i)),
            Source::Empty => Bytes::new(),
        }
    }

    /// For a duration phase starting at index `first`: the bodies of the next `count` indexes
    /// built now (on a blocking thread), when this source signs on the fly; no more than
    /// [`AHEAD_BYTES`] of them.
    pub async fn ahead(self: &Arc<Self>, first: u64, count: u64) -> anyhow::Result<Arc<Self>> {
        self.ahead_within(first, count, AHEAD_BYTES).await
    }

    async fn ahead_within(
        self: &Arc<Self>,
        first: u64,
        count: u64,
        max_bytes: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let Source::OnDemand(build) = &**self else {
            return Ok(Arc::clone(self));
        };
        let build = Arc::clone(build);
        let bodies = {
            let build = Arc::clone(&build);
            tokio::task::spawn_blocking(move || {
                let mut built = 0;
                (first..first + count)
                    .map(|i| build(i))
                    .take_while(|body| {
                        built += body.len();
                        built <= max_bytes
                    })
                    .collect()
            })
            .await?
        };
        Ok(Arc::new(Source::Ahead {
            first,
            bodies,
            build,
        }))
    }
}

/// How many bytes of bodies may be built before a phase: about 530 000 pay notices, enough
/// for 5 s at 80 000/s with the third to spare, and about 600 MB of generator memory with the
/// allocator's overhead. A count cap would leave a fast server's phase signing on the fly,
/// taking the generator's CPU from the server, while a slower one's is wholly prebuilt.
pub const AHEAD_BYTES: usize = 384 << 20;

/// How long a phase runs.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Duration(Duration),
    Requests(u64),
}

/// What one phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    /// Which repetition of the phase sequence this was (1-based).
    pub round: u32,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Successful answers per second.
    pub throughput: f64,
    pub latency_us: Latency,
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first request index a following phase of the same source may use, so that every
    /// round sends requests of its own.
    #[serde(skip)]
    pub next_index: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

struct ConnResult {
    histogram: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// What one phase sends, where, and how much.
pub struct Phase<'a> {
    pub name: &'a str,
    pub round: u32,
    pub target: &'a Target,
    pub api: Api,
    pub source: Arc<Source>,
    /// The index of the phase's first request in `source`.
    pub first: u64,
    pub connections: usize,
    pub limit: Limit,
    pub progress: bool,
}

/// Runs one phase over `connections` connections.
pub async fn run_phase(phase: Phase<'_>) -> anyhow::Result<PhaseResult> {
    let Phase {
        name,
        round,
        target,
        api,
        source,
        first,
        connections,
        limit,
        progress,
    } = phase;
    let next = Arc::new(AtomicU64::new(first));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = match limit {
        Limit::Duration(d) => Some(started + d),
        Limit::Requests(_) => None,
    };
    let cap = match limit {
        Limit::Requests(n) => first.saturating_add(n),
        Limit::Duration(_) => u64::MAX,
    };
    let bar = progress.then(|| progress_bar(name, limit));
    let ticker = bar.clone().map(|bar| {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match limit {
                    Limit::Requests(_) => bar.set_position(done.load(Ordering::Relaxed)),
                    Limit::Duration(_) => {
                        bar.set_position(started.elapsed().as_millis() as u64);
                        bar.set_message(format!("{} answers", done.load(Ordering::Relaxed)));
                    }
                }
            }
        })
    });
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let target = target.clone();
        let source = Arc::clone(&source);
        let next = Arc::clone(&next);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            connection(target, api, source, next, done, cap, deadline).await
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ok = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let r = task.await?;
        histogram.add(&r.histogram)?;
        ok += r.ok;
        for (code, n) in r.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let failed: u64 = errors.values().sum();
    Ok(PhaseResult {
        name: name.to_string(),
        round,
        next_index: next.load(Ordering::Relaxed).min(cap),
        requests: ok + failed,
        ok,
        errors: failed,
        seconds,
        throughput: ok as f64 / seconds.max(1e-9),
        latency_us: Latency {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        },
        errors_by_code: errors,
    })
}

fn progress_bar(name: &str, limit: Limit) -> indicatif::ProgressBar {
    let (len, template) = match limit {
        Limit::Requests(n) => (n, "{prefix:>10} [{bar:40}] {pos}/{len} {per_sec}"),
        Limit::Duration(d) => (
            d.as_millis() as u64,
            "{prefix:>10} [{bar:40}] {elapsed}/{duration} {msg}",
        ),
    };
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_string());
    bar
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn connection(
    target: Target,
    api: Api,
    source: Arc<Source>,
    next: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    cap: u64,
    deadline: Option<Instant>,
) -> ConnResult {
    let mut result = ConnResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        ok: 0,
        errors: BTreeMap::new(),
    };
    let mut sender: Option<Sender> = None;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= cap {
            break;
        }
        let body = source.get(i);
        let started = Instant::now();
        let outcome = send(&target, &mut sender, body).await;
        let micros = started.elapsed().as_micros() as u64;
        let _ = result.histogram.record(micros.max(1));
        done.fetch_add(1, Ordering::Relaxed);
        let failure = match outcome {
            Ok((status, bytes)) => classify(api, status, &bytes),
            Err(e) => {
                // The connection is gone: the next request opens a new one.
                sender = None;
                Some(format!("io:{}", e.split(':').next().unwrap_or("error")))
            }
        };
        match failure {
            None => result.ok += 1,
            Some(code) => *result.errors.entry(code).or_default() += 1,
        }
    }
    result
}

async fn send(
    target: &Target,
    sender: &mut Option<Sender>,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    if sender.is_none() {
        *sender = Some(connect(target).await?);
    }
    let s = sender.as_mut().expect("connected above");
    s.ready().await.map_err(|e| format!("ready: {e}"))?;
    let mut builder = Request::builder()
        .method(target.method.clone())
        .uri(target.path.as_str())
        .header(header::HOST, target.host.as_str());
    if target.method == Method::POST {
        builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = s
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    read_response(response).await
}

/// The status and the whole body of an answer.
async fn read_response(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<(u16, Bytes), String> {
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

/// Sends one JSON request (admin API) on a fresh connection; returns status and body.
pub async fn send_json(
    target: &Target,
    token: &str,
    body: &serde_json::Value,
) -> Result<(u16, Bytes), String> {
    let mut sender = connect(target).await?;
    json_on(&mut sender, target, token, body).await
}

async fn json_on(
    sender: &mut Sender,
    target: &Target,
    token: &str,
    body: &serde_json::Value,
) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::HOST, target.host.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    read_response(response).await
}

/// POSTs `bodies` to the admin API over `connections` keep-alive connections; fails on the
/// first answer that is not 200.
pub async fn admin_create_all(
    target: &Target,
    token: &str,
    bodies: Vec<serde_json::Value>,
    connections: usize,
) -> anyhow::Result<()> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.clamp(1, 32) {
        let (bodies, next, target, token) = (
            Arc::clone(&bodies),
            Arc::clone(&next),
            target.clone(),
            token.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&target).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(i) else {
                    return Ok(());
                };
                let (status, bytes) = json_on(&mut sender, &target, &token, body).await?;
                if status != 200 {
                    return Err(format!(
                        "admin API answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ));
                }
            }
        }));
    }
    for task in tasks {
        task.await?.map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ahead_serves_built_bodies_then_signs_on_the_fly() {
        let on_demand = Arc::new(Source::OnDemand(Arc::new(|i| Bytes::from(i.to_string()))));
        let ahead = on_demand.ahead(10, 3).await.unwrap();
        let Source::Ahead { bodies, .. } = &*ahead else {
            panic!("not built ahead");
        };
        assert_eq!(bodies.len(), 3);
        for i in [0, 9, 10, 12, 13, 500] {
            assert_eq!(ahead.get(i), Bytes::from(i.to_string()), "index {i}");
        }
        let capped = on_demand.ahead_within(100, 50, 6).await.unwrap();
        let Source::Ahead { bodies, .. } = &*capped else {
            panic!("not built ahead");
        };
        assert_eq!(bodies.len(), 2, "two 3-byte bodies fit in 6 bytes");
        assert_eq!(
            capped.get(104),
            Bytes::from("104"),
            "past them, signed on the fly"
        );
        let prebuilt = Arc::new(Source::Prebuilt(vec![Bytes::from("a")]));
        assert!(matches!(
            *prebuilt.ahead(0, 5).await.unwrap(),
            Source::Prebuilt(_)
        ));
    }
}
