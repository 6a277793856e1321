//! `topgate bench`: a signed load generator for the four APIs (in the spirit of pgbench and
//! redis-benchmark), and `topgate bench seed`, which writes stored orders for it.
//!
//! A run measures, over the same connections and with the same generator, up to three phases:
//! the `/healthz` ceiling (what the HTTP stack does for a request that does nothing), the chosen
//! API doing its real work, and optionally the same requests against another server
//! (`--compare-url`, e.g. a Mockoon mock). Figures are reported as ratios of the same run, as
//! absolute numbers from a shared 2-core machine mean little on their own.

pub mod load;
pub mod requests;
pub mod seed;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;
use top_protocol::SignMethod;

use crate::store::Store;
use load::{Limit, PhaseResult, Source, Target};
use requests::{Api, Plan};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Write N lianbei orders and N right orders directly into the store (server stopped;
    /// the database is the global --database-url).
    Seed {
        #[arg(long, default_value_t = 1000)]
        orders: u64,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The API to drive.
    #[arg(long, value_enum, default_value = "pay")]
    api: Api,
    /// The server's router URL; /healthz and /admin are taken on the same host.
    #[arg(long, default_value = "http://127.0.0.1:8080/router/rest")]
    url: String,
    /// Keep-alive connections, one task each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per phase (default 10 when --requests is not given).
    #[arg(long, conflicts_with = "requests")]
    duration: Option<f64>,
    /// Requests per phase.
    #[arg(long)]
    requests: Option<u64>,
    #[arg(long, default_value = "md5")]
    sign_method: SignMethod,
    #[arg(long, default_value = crate::sandbox::APP_KEY)]
    app_key: String,
    #[arg(long, default_value = crate::sandbox::SECRET)]
    secret: String,
    #[arg(long, default_value = crate::sandbox::SESSION)]
    session: String,
    /// Bearer token of the server's admin API, to create the orders the run consumes.
    #[arg(long, env = "TOPGATE_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Orders prepared for supplier/opentrade in a --duration run (each is notified once;
    /// past that, requests cycle over them and become idempotent replays).
    #[arg(long, default_value_t = 20_000)]
    pool: u64,
    /// Read the N lianbei orders written by `topgate bench seed` (else orders made for the run).
    #[arg(long, default_value_t = 0)]
    seeded: u64,
    /// Also send the same requests to this URL (e.g. a Mockoon mock) in the same run.
    #[arg(long)]
    compare_url: Option<String>,
    /// Name of the --compare-url server in the report.
    #[arg(long, default_value = "compare")]
    compare_name: String,
    /// Skip the /healthz ceiling phase.
    #[arg(long)]
    no_ceiling: bool,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

pub async fn main(args: BenchArgs, database_url: String) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(BenchCommand::Seed { orders }) => {
            let store = Store::open(&database_url)?;
            let started = std::time::Instant::now();
            seed::seed(&store, orders, std::io::stdout().is_terminal()).await?;
            println!(
                "seeded {orders} lianbei orders (tid {}..) and {orders} right orders into {} in {:.1}s",
                seed::LIANBEI_BASE,
                store.describe(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => run(args.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, d) => Limit::Duration(Duration::from_secs_f64(d.unwrap_or(10.0))),
    };
    let target = Target::parse(&args.url, Method::POST).await?;
    let healthz = target.with_path("/healthz", Method::GET);
    let progress = std::io::stdout().is_terminal() && !args.json;
    let plan = prepare(&args, &target, limit).await?;

    let mut phases = Vec::new();
    if !args.no_ceiling || args.api == Api::Healthz {
        phases.push(
            load::run_phase(
                "healthz",
                &healthz,
                Api::Healthz,
                Arc::new(Source::Empty),
                args.connections,
                limit,
                progress,
            )
            .await?,
        );
    }
    if args.api != Api::Healthz {
        let source = Arc::new(source(&plan, args.api, limit).await?);
        phases.push(
            load::run_phase(
                args.api.name(),
                &target,
                args.api,
                Arc::clone(&source),
                args.connections,
                limit,
                progress,
            )
            .await?,
        );
        if let Some(url) = &args.compare_url {
            let other = Target::parse(url, Method::POST).await?;
            // The mock answers whatever it is sent: the same bodies, any success counts.
            phases.push(
                load::run_phase(
                    &args.compare_name,
                    &other,
                    Api::Healthz,
                    source,
                    args.connections,
                    limit,
                    progress,
                )
                .await?,
            );
        }
    }
    report(&args, limit, &phases);
    Ok(ExitCode::SUCCESS)
}

/// How many distinct orders a phase of `api` consumes.
fn consumed(api: Api, limit: Limit, pool: u64) -> u64 {
    let n = match limit {
        Limit::Requests(n) => n,
        Limit::Duration(_) => pool,
    };
    if api == Api::Mix {
        n.div_ceil(4)
    } else {
        n
    }
}

/// Creates what the run's requests need through the admin API and returns the plan.
async fn prepare(args: &RunArgs, target: &Target, limit: Limit) -> anyhow::Result<Plan> {
    use rand::Rng;
    // A fresh id range per run: orders of earlier runs on the same database are left alone.
    let base: i64 = 10_000_000_000 + rand::thread_rng().gen_range(0..50_000_000) * 1_000_000;
    let mut plan = Plan {
        app_key: args.app_key.clone(),
        secret: args.secret.clone(),
        session: args.session.clone(),
        sign_method: args.sign_method,
        tag: crate::apps::random_token(8),
        lianbei: (1000, 1),
        carrier: (base, 0),
        opentrade: (base + 300_000, 0),
    };
    let needs = |api: Api| args.api == api || args.api == Api::Mix;
    let n = consumed(args.api, limit, args.pool).min(250_000);
    let admin = target.with_path("/admin/trades", Method::POST);
    let token = args.admin_token.as_deref();
    let mut bodies = Vec::new();
    if needs(Api::Supplier) {
        plan.carrier.1 = n;
        bodies.extend(seed::carrier_trades(plan.carrier.0, n));
    }
    if needs(Api::Opentrade) {
        plan.opentrade.1 = n;
        bodies.extend(seed::opentrade_trades(plan.opentrade.0, n));
    }
    if needs(Api::Lianbei) {
        if args.seeded > 0 {
            plan.lianbei = (seed::LIANBEI_BASE, args.seeded);
        } else if token.is_some() {
            let k = n.min(1000);
            plan.lianbei = (base + 600_000, k);
            bodies.extend(seed::lianbei_trades(plan.lianbei.0, k));
        }
    }
    if !bodies.is_empty() {
        let token = token.ok_or_else(|| {
            anyhow::anyhow!(
                "--api {} needs orders: pass --admin-token (server started with TOPGATE_ADMIN_TOKEN)",
                args.api.name()
            )
        })?;
        if !args.json {
            eprintln!("preparing {} orders through the admin API…", bodies.len());
        }
        load::admin_create_all(&admin, token, bodies, args.connections).await?;
    }
    Ok(plan)
}

/// The bodies of the API phase: all built before the clock starts when the count is known
/// (up to a million), else signed on the fly.
async fn source(plan: &Plan, api: Api, limit: Limit) -> anyhow::Result<Source> {
    let plan = Arc::new(plan.clone());
    let now = OffsetDateTime::now_utc();
    Ok(match limit {
        Limit::Requests(n) if n <= 1_000_000 => {
            let bodies = tokio::task::spawn_blocking(move || {
                (0..n)
                    .map(|i| requests::body(&plan, api, i, now))
                    .collect::<Vec<_>>()
            })
            .await?;
            Source::Prebuilt(bodies)
        }
        _ => Source::OnDemand(Arc::new(move |i| {
            requests::body(&plan, api, i, OffsetDateTime::now_utc())
        })),
    })
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn report(args: &RunArgs, limit: Limit, phases: &[PhaseResult]) {
    let find = |name: &str| phases.iter().find(|p| p.name == name);
    let ceiling = find("healthz").map(|p| p.throughput);
    let api = (args.api != Api::Healthz)
        .then(|| find(args.api.name()))
        .flatten();
    let compare = args
        .compare_url
        .as_ref()
        .and_then(|_| find(&args.compare_name));
    let ratio_to_ceiling = match (api, ceiling) {
        (Some(a), Some(c)) if c > 0.0 => Some(a.throughput / c),
        _ => None,
    };
    let ratio_to_compare = match (api, compare) {
        (Some(a), Some(c)) if c.throughput > 0.0 => Some(a.throughput / c.throughput),
        _ => None,
    };
    let limit_text = match limit {
        Limit::Duration(d) => format!("{:.1}s per phase", d.as_secs_f64()),
        Limit::Requests(n) => format!("{n} requests per phase"),
    };
    if args.json {
        let doc = json!({
            "api": args.api.name(),
            "method": args.api.method(),
            "url": args.url,
            "connections": args.connections,
            "limit": limit_text,
            "sign_method": args.sign_method.as_wire(),
            "phases": phases,
            "ratio_to_ceiling": ratio_to_ceiling,
            "ratio_to_compare": ratio_to_compare,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "topgate bench: {} ({}), {} connections, {limit_text}, sign {}",
        args.api.name(),
        args.api.method(),
        args.connections,
        args.sign_method
    );
    println!(
        "{:<10} {:>9} {:>7} {:>10}  {:>8} {:>8} {:>8} {:>8} {:>8}",
        "phase", "answers", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for p in phases {
        let l = &p.latency_us;
        println!(
            "{:<10} {:>9} {:>7} {:>10.0}  {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.name,
            p.requests,
            p.errors,
            p.throughput,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
    }
    if let Some(r) = ratio_to_ceiling {
        println!("{} / healthz ceiling: {:.1}%", args.api.name(), r * 100.0);
    }
    if let Some(r) = ratio_to_compare {
        println!("{} / {}: {:.1}x", args.api.name(), args.compare_name, r);
    }
    for p in phases.iter().filter(|p| p.errors > 0) {
        let codes: Vec<String> = p
            .errors_by_code
            .iter()
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect();
        println!("errors of {}: {}", p.name, codes.join(", "));
    }
}
