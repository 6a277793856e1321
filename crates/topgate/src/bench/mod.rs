//! `topgate bench`: a signed load generator for the four APIs (in the spirit of pgbench and
//! redis-benchmark), and `topgate bench seed`, which writes stored orders for it.
//!
//! A run measures, over the same connections and with the same generator, up to three phases:
//! the `/healthz` ceiling (what the HTTP stack does for a request that does nothing), the chosen
//! API doing its real work, and optionally the same requests against another server
//! (`--compare-url`, e.g. a Mockoon mock). Figures are reported as ratios of the same run, as
//! absolute numbers from a shared 2-core machine mean little on their own. `--rounds N` repeats
//! that sequence N times, alternating, and reports the median of the rounds' ratios; every
//! round sends requests of its own (the API phases share one index sequence).

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

use crate::cli::at_least_one;
use crate::store::Store;
use load::{Limit, PhaseResult, Source, Target};
use requests::{Api, Plan};

/// The shortest phase whose rate a ratio may be drawn from; see the note in [`report`].
const SHORTEST_MEANINGFUL_PHASE_SECS: f64 = 1.0;

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
        #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = at_least_one::<u64>)]
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
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = at_least_one::<usize>)]
    connections: usize,
    /// Seconds per phase (default 10 when --requests is not given).
    #[arg(long, conflicts_with = "requests", allow_negative_numbers = true, value_parser = positive_seconds)]
    duration: Option<f64>,
    /// Requests per phase.
    #[arg(long, allow_negative_numbers = true, value_parser = at_least_one::<u64>)]
    requests: Option<u64>,
    #[arg(long, default_value = "md5")]
    sign_method: SignMethod,
    #[arg(long, default_value = crate::sandbox::APP_KEY)]
    app_key: String,
    #[arg(long, env = "TOPGATE_APP_SECRET", hide_env_values = true, default_value = crate::sandbox::SECRET)]
    secret: String,
    #[arg(long, default_value = crate::sandbox::SESSION)]
    session: String,
    /// Bearer token of the server's admin API, to create the orders the run consumes.
    #[arg(long, env = "TOPGATE_ADMIN_TOKEN", hide_env_values = true)]
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
    /// Run the phase sequence (ceiling, API, comparison) this many times, alternating, and
    /// report the median of the rounds' ratios: on a shared machine the speed drifts between
    /// phases, and alternating short phases cancels more of that drift than one long pair.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
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
            crate::cli::print_out(&format!("seeded {orders} lianbei orders (tid {}..) and {orders} right orders into {} in {:.1}s",
                seed::LIANBEI_BASE,
                store.describe(),
                started.elapsed().as_secs_f64()));
            Ok(ExitCode::SUCCESS)
        }
        None => run(args.run).await,
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if d > 0.0 && Duration::try_from_secs_f64(d).is_ok() => Ok(d),
        _ => Err("expected a positive number of seconds".into()),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, d) => Limit::Duration(Duration::from_secs_f64(d.unwrap_or(10.0))),
    };
    let target = Target::parse(&args.url, Method::POST).await?;
    let healthz = target.with_path("/healthz", Method::GET);
    let progress = std::io::stdout().is_terminal() && !args.json;
    let plan = prepare(&args, &target, limit).await?;

    let source = match args.api {
        Api::Healthz => None,
        api => Some(Arc::new(source(&plan, api, limit, args.rounds).await?)),
    };
    let compare = match &args.compare_url {
        Some(url) if source.is_some() => Some(Target::parse(url, Method::POST).await?),
        _ => None,
    };
    let mut phases = Vec::new();
    let mut next_api_index = 0;
    // Answers per second the next API phase may reach: the last API phase's, else the
    // ceiling's (an upper bound).
    let mut expected_rate: Option<f64> = None;
    for round in 1..=args.rounds {
        let phase = |name, target, api, source, first| load::Phase {
            name,
            round,
            target,
            api,
            source,
            first,
            connections: args.connections,
            limit,
            progress,
        };
        if !args.no_ceiling || args.api == Api::Healthz {
            let empty = Arc::new(Source::Empty);
            let ceiling =
                load::run_phase(phase("healthz", &healthz, Api::Healthz, empty, 0)).await?;
            expected_rate.get_or_insert(ceiling.throughput);
            phases.push(ceiling);
        }
        let Some(source) = &source else { continue };
        let first = next_api_index;
        let source = match limit {
            Limit::Duration(d) => source.ahead(first, bodies_ahead(d, expected_rate)).await?,
            Limit::Requests(_) => Arc::clone(source),
        };
        let source = &source;
        let done = load::run_phase(phase(
            args.api.name(),
            &target,
            args.api,
            Arc::clone(source),
            first,
        ))
        .await?;
        next_api_index = done.next_index;
        expected_rate = Some(done.throughput);
        phases.push(done);
        if let Some(other) = &compare {
            // The mock answers whatever it is sent: the same bodies, any success counts.
            let name = args.compare_name.as_str();
            let src = Arc::clone(source);
            phases.push(load::run_phase(phase(name, other, Api::Healthz, src, first)).await?);
        }
    }
    report(&args, limit, &phases);
    // Figures of a phase that got no successful answer measure nothing: a script running the
    // bench must not take them for a result.
    let failed: Vec<&str> = phases
        .iter()
        .filter(|p| p.ok == 0)
        .map(|p| p.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no successful answer in phase(s): {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// How many bodies to build before a duration phase: a third more than the expected rate
/// needs (20 000/s when nothing was measured yet), within [`load::AHEAD_BYTES`]; past them
/// the phase signs on the fly.
fn bodies_ahead(duration: Duration, expected_rate: Option<f64>) -> u64 {
    let rate = expected_rate.filter(|r| *r > 0.0).unwrap_or(20_000.0);
    ((rate * duration.as_secs_f64() * 4.0 / 3.0).ceil() as u64).max(1)
}

/// How many distinct orders a phase of `api` consumes.
fn consumed(api: Api, limit: Limit, pool: u64, rounds: u32) -> u64 {
    let n = match limit {
        Limit::Requests(n) => n.saturating_mul(u64::from(rounds)),
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
    let n = consumed(args.api, limit, args.pool, args.rounds).min(250_000);
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

/// The bodies of the API phases of every round: all built before the clock starts when the
/// count is known (up to a million), else signed on the fly (and built ahead of each phase by
/// [`Source::ahead`]).
async fn source(plan: &Plan, api: Api, limit: Limit, rounds: u32) -> anyhow::Result<Source> {
    let plan = Arc::new(plan.clone());
    let now = OffsetDateTime::now_utc();
    let total = match limit {
        Limit::Requests(n) => Some(n.saturating_mul(u64::from(rounds))),
        Limit::Duration(_) => None,
    };
    Ok(match total {
        Some(n) if n <= 1_000_000 => {
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

/// The median of the rounds' ratios `api / base` (`None` when a round lacks either phase).
fn median_ratio(phases: &[PhaseResult], api: &str, base: &str) -> (Option<f64>, Vec<f64>) {
    let rounds = phases.iter().map(|p| p.round).max().unwrap_or(0);
    let mut ratios: Vec<f64> = (1..=rounds)
        .filter_map(|round| {
            let find = |name: &str| phases.iter().find(|p| p.round == round && p.name == name);
            let (a, b) = (find(api)?, find(base)?);
            (b.throughput > 0.0).then(|| a.throughput / b.throughput)
        })
        .collect();
    let per_round = ratios.clone();
    ratios.sort_by(f64::total_cmp);
    let median = match ratios.len() {
        0 => None,
        n if n % 2 == 1 => Some(ratios[n / 2]),
        n => Some((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
    };
    (median, per_round)
}

fn report(args: &RunArgs, limit: Limit, phases: &[PhaseResult]) {
    let api = args.api.name();
    let (ratio_to_ceiling, ceiling_rounds) = median_ratio(phases, api, "healthz");
    let (ratio_to_compare, compare_rounds) = match &args.compare_url {
        Some(_) => median_ratio(phases, api, &args.compare_name),
        None => (None, Vec::new()),
    };
    let limit_text = match limit {
        Limit::Duration(d) => format!("{:.1}s per phase", d.as_secs_f64()),
        Limit::Requests(n) => format!("{n} requests per phase"),
    };
    if args.json {
        let doc = json!({
            "api": api,
            "method": args.api.method(),
            "url": args.url,
            "connections": args.connections,
            "limit": limit_text,
            "rounds": args.rounds,
            "sign_method": args.sign_method.as_wire(),
            "phases": phases,
            "ratio_to_ceiling": ratio_to_ceiling,
            "ratio_to_ceiling_by_round": ceiling_rounds,
            "ratio_to_compare": ratio_to_compare,
            "ratio_to_compare_by_round": compare_rounds,
        });
        crate::cli::print_out(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    crate::cli::print_out(&format!(
        "topgate bench: {api} ({}), {} connections, {limit_text}, {} round(s), sign {}",
        args.api.method(),
        args.connections,
        args.rounds,
        args.sign_method
    ));
    crate::cli::print_out(&format!(
        "{:<12} {:>9} {:>7} {:>10}  {:>8} {:>8} {:>8} {:>8} {:>8}",
        "phase", "answers", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    ));
    for p in phases {
        let l = &p.latency_us;
        let name = if args.rounds > 1 {
            format!("{}#{}", p.name, p.round)
        } else {
            p.name.clone()
        };
        crate::cli::print_out(&format!(
            "{:<12} {:>9} {:>7} {:>10.0}  {:>8} {:>8} {:>8} {:>8} {:>8}",
            name,
            p.requests,
            p.errors,
            p.throughput,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        ));
    }
    let rounds_text = |ratios: &[f64], scale: f64, unit: &str| {
        if ratios.len() < 2 {
            return String::new();
        }
        let each: Vec<String> = ratios
            .iter()
            .map(|r| format!("{:.1}{unit}", r * scale))
            .collect();
        format!(" (median of rounds: {})", each.join(", "))
    };
    if let Some(r) = ratio_to_ceiling {
        let detail = rounds_text(&ceiling_rounds, 100.0, "%");
        crate::cli::print_out(&format!(
            "{api} / healthz ceiling: {:.1}%{detail}",
            r * 100.0
        ));
    }
    // A phase of a fraction of a second measures its connections' start and the server's
    // first pages more than its rate: 200 requests gave lianbei 283 % of the ceiling.
    if (ratio_to_ceiling.is_some() || ratio_to_compare.is_some())
        && phases
            .iter()
            .any(|p| p.seconds < SHORTEST_MEANINGFUL_PHASE_SECS)
    {
        crate::cli::print_out(&format!(
            "note: a phase lasted under {SHORTEST_MEANINGFUL_PHASE_SECS} s, so these ratios say \
             little; use --duration (5 s or more) or more --requests"
        ));
    }
    if let Some(r) = ratio_to_compare {
        let detail = rounds_text(&compare_rounds, 1.0, "x");
        crate::cli::print_out(&format!("{api} / {}: {:.1}x{detail}", args.compare_name, r));
    }
    for p in phases.iter().filter(|p| p.errors > 0) {
        let codes: Vec<String> = p
            .errors_by_code
            .iter()
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect();
        crate::cli::print_out(&format!(
            "errors of {} (round {}): {}",
            p.name,
            p.round,
            codes.join(", ")
        ));
    }
}
