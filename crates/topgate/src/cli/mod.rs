//! The `topgate` command line: `serve`, app and session management, `sign --explain`, `call`,
//! and the admin operations on the local database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::{json, Value};
use top_protocol::sign::{sign_string, string_to_sign};
use top_protocol::{Format, ParamSet, SignMethod};

use crate::admin::ops;
use crate::apps;
use crate::clock::{millis, Clock};
use crate::config::Settings;
use crate::sandbox::{self, SeededApp};
use crate::store::Store;
use crate::Server;

#[derive(Parser)]
#[command(
    name = "topgate",
    version,
    about = "A TOP router/rest gateway and stateful sandbox"
)]
struct Cli {
    /// Settings file (default: ./topgate.toml when present).
    #[arg(long, global = true, help_heading = GLOBAL)]
    config: Option<PathBuf>,
    /// Database URL: sqlite://path (default .topgate/topgate.db) or
    /// postgres://user:password@host:port/db. With --sandbox only this option chooses the
    /// database (default .topgate/sandbox.db): the variable and the settings file are ignored.
    // The variable's value may hold a password: `--help` must not print it.
    #[arg(
        long,
        global = true,
        env = "TOPGATE_DATABASE_URL",
        hide_env_values = true,
        help_heading = GLOBAL
    )]
    database_url: Option<String>,
    /// Use the sandbox database (and, for `serve`, seed it).
    #[arg(long, global = true, help_heading = GLOBAL)]
    sandbox: bool,
    #[command(subcommand)]
    command: Command,
}

/// Heading of the global options: in a subcommand's help they would otherwise be interleaved
/// with its own.
const GLOBAL: &str = "Global options";

/// The exit status of `call` when the gateway answered with an `error_response`: neither 1,
/// which any other failure exits with (no answer, or one that is no TOP envelope), nor 2,
/// clap's for a usage error, so that a script can tell a refused call from a broken one.
const EXIT_TOP_ERROR: u8 = 3;

const CALL_EXIT_STATUS: &str = "\
Exit status:
  0  the call succeeded
  1  no TOP answer: the server could not be reached, or answered something that is no TOP
     envelope
  2  a usage error
  3  the gateway answered an error_response, printed on stderr with its code, msg, sub_code and
     sub_msg (those it has) and request_id";

#[derive(Subcommand)]
enum Command {
    /// Load-test a running server with signed requests (`bench seed` writes stored orders).
    Bench(crate::bench::BenchArgs),
    /// Serve the TOP API, /healthz, /metrics and the admin API until SIGINT or SIGTERM.
    ///
    /// The TOP API is /router/rest and /router/batch; the admin API, under /admin/, is on only
    /// with an admin token (`admin_token`, TOPGATE_ADMIN_TOKEN).
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Manage sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Print the canonical string and signature of a parameter set (never the secret).
    Sign {
        /// Print the canonical string too.
        #[arg(long)]
        explain: bool,
        /// The app secret to sign with (from the environment, it stays out of the shell's
        /// history and the process list).
        #[arg(long, env = "TOPGATE_APP_SECRET", hide_env_values = true)]
        secret: String,
        /// md5, hmac or hmac-sha256 [default: the `sign_method` parameter's when not empty, else
        /// md5, as the gateway verifies]
        #[arg(long)]
        sign_method: Option<SignMethod>,
        /// A parameter, repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
        params: Vec<(String, String)>,
        /// A batch's raw body, appended to the string to sign (`/router/batch`).
        #[arg(long, value_name = "TEXT")]
        body: Option<String>,
    },
    /// Call a TOP method and print the response.
    #[command(after_help = CALL_EXIT_STATUS)]
    Call(CallArgs),
    /// Admin operations on the business data.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Run only the event dispatcher (outbox to webhooks and NATS) until SIGINT or SIGTERM.
    Dispatch,
    /// Events, sinks, deliveries and attempts (docs/events.md).
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Subcommand)]
enum EventsCommand {
    /// List events (oldest first) with their delivery state per sink.
    List {
        /// Only events with a larger id.
        #[arg(long, allow_negative_numbers = true)]
        after: Option<i64>,
        #[command(flatten)]
        page: PageLimit,
        #[arg(long)]
        entity: Option<String>,
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
    },
    /// Show one event.
    Show { event_id: i64 },
    /// List sinks (secrets are never shown).
    Sinks,
    /// Register a webhook; a signing secret is generated (and printed once) unless given.
    AddWebhook {
        #[arg(long)]
        url: String,
        /// At least 16 characters.
        #[arg(long, env = "TOPGATE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Event type to send, repeatable (default: all).
        #[arg(long = "event-type", value_name = "TYPE")]
        event_types: Vec<String>,
        /// Register it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Register a NATS JetStream sink.
    AddNats {
        #[arg(long, default_value = crate::events::nats::DEFAULT_URL)]
        url: String,
        #[arg(long, default_value = crate::events::nats::DEFAULT_STREAM)]
        stream: String,
        #[arg(long, default_value = crate::events::nats::DEFAULT_SUBJECT_PREFIX)]
        subject_prefix: String,
        /// Event type to send, repeatable (default: all).
        #[arg(long = "event-type", value_name = "TYPE")]
        event_types: Vec<String>,
        /// Register it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Enable a sink: its pending deliveries resume.
    Enable { sink_id: i64 },
    /// Disable a sink: nothing is sent to it and new events are not queued for it.
    Disable { sink_id: i64 },
    /// Deliveries of a sink, optionally in one state (pending, delivered, dead).
    Deliveries {
        sink_id: i64,
        #[arg(long, value_parser = ["pending", "delivered", "dead"])]
        state: Option<String>,
        /// Only deliveries of events with a larger id.
        #[arg(long, allow_negative_numbers = true)]
        after: Option<i64>,
        #[command(flatten)]
        page: PageLimit,
    },
    /// Delivery attempts of an event (all sinks) or of a sink (newest first).
    // A group, not `required_unless_present` on --event: clap would then report a missing
    // --event alone, as if --sink were no choice.
    #[command(group(ArgGroup::new("of").required(true).args(["event", "sink"])))]
    Attempts {
        /// Attempts of this event, to every sink (all of them: no --limit).
        #[arg(long, conflicts_with = "limit")]
        event: Option<i64>,
        /// Attempts to this sink.
        #[arg(long)]
        sink: Option<i64>,
        #[command(flatten)]
        page: PageLimit,
    },
    /// Re-queue one event, the dead letters, or everything from an event id on, for a sink.
    // One of the three, named together when none is given (see `Attempts`).
    #[command(group(ArgGroup::new("what").required(true).args(["event", "dead", "from_event"])))]
    Redeliver {
        sink_id: i64,
        /// Re-queue this event.
        #[arg(long)]
        event: Option<i64>,
        /// Re-queue the sink's dead letters.
        #[arg(long)]
        dead: bool,
        /// Re-queue every event from this id on.
        #[arg(long)]
        from_event: Option<i64>,
    },
}

/// The `--limit` of every listing, parsed alike: below 1 is a usage error (exit 2), naming the
/// option, rather than a page of one as over HTTP, where `ops::page_limit` cuts every value
/// into range; above the largest page it is cut the same way.
#[derive(Args)]
struct PageLimit {
    /// Page size, at least 1: 100 by default; a value above 1000 lists 1000.
    #[arg(long, allow_negative_numbers = true, value_parser = at_least_one::<i64>)]
    limit: Option<i64>,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an app (all methods granted unless --method is given).
    Create {
        #[arg(long)]
        app_key: String,
        /// Generated when absent.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// A method to grant, repeatable.
        #[arg(long = "method", value_name = "METHOD")]
        methods: Vec<String>,
        /// Calls per second allowed for each granted method.
        #[arg(long, allow_negative_numbers = true, value_parser = at_least_one::<u32>)]
        calls_per_second: Option<u32>,
        #[arg(long)]
        supplier_id: Option<i64>,
        #[arg(long)]
        partner_id: Option<i64>,
        #[arg(long)]
        provider_id: Option<i64>,
        #[arg(long)]
        seller_id: Option<i64>,
    },
    /// List apps (secrets are never shown).
    List,
    /// Disable an app: its calls are refused.
    Disable { app_key: String },
    /// Enable a disabled app.
    Enable { app_key: String },
    /// Replace an app's secret with a new one, printed once.
    RotateSecret { app_key: String },
    /// Grant a method, optionally with a calls-per-second limit.
    Grant {
        app_key: String,
        method: String,
        #[arg(long, allow_negative_numbers = true, value_parser = at_least_one::<u32>)]
        calls_per_second: Option<u32>,
    },
    /// Withdraw a granted method: its calls are refused with code 11.
    Revoke { app_key: String, method: String },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session of a user for an app, and print its key.
    Create {
        #[arg(long)]
        app_key: String,
        #[arg(long)]
        user_id: i64,
        /// Seconds until the session expires, up to 100 years; the default, one day, is also
        /// that of `POST /admin/sessions` without `ttl_secs`.
        #[arg(long, default_value_t = ops::DEFAULT_TTL_SECS, allow_negative_numbers = true, value_parser = at_least_one::<i64>)]
        ttl_secs: i64,
    },
    /// End a session now: calls with it are refused (code 27), by a running server within its
    /// app cache time (`auth_cache_ms`).
    Revoke {
        /// The session key.
        session_key: String,
    },
}

#[derive(Args)]
struct CallArgs {
    method: String,
    /// A parameter, repeatable; object parameters as JSON text.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
    params: Vec<(String, String)>,
    /// The gateway's /router/rest URL (http or https).
    #[arg(long, default_value = "http://127.0.0.1:8080/router/rest", value_parser = parse_http_url)]
    url: String,
    #[arg(long, default_value = sandbox::APP_KEY)]
    app_key: String,
    /// The app secret (from the environment, it stays out of the shell's history and the
    /// process list).
    #[arg(long, env = "TOPGATE_APP_SECRET", hide_env_values = true, default_value = sandbox::SECRET)]
    secret: String,
    #[arg(long, env = "TOPGATE_SESSION", hide_env_values = true)]
    session: Option<String>,
    /// md5, hmac or hmac-sha256.
    #[arg(long, default_value = "hmac-sha256")]
    sign_method: SignMethod,
    /// json or xml.
    #[arg(long, default_value = "json", value_parser = parse_format)]
    format: Format,
    #[arg(long)]
    simplify: bool,
    /// Indent a JSON answer (re-serialised: keys sorted). Without it the body is printed
    /// exactly as it came over the wire.
    #[arg(long)]
    pretty: bool,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a resource from JSON: users, items, biz-types, suppliers, partners, stores,
    /// providers, rights, trades, apps, sessions.
    Create { resource: String, json: String },
    /// Show a trade, or apply an event to it (pay, cancel, consign, confirm, refund).
    Trade { tid: i64, event: Option<String> },
    /// Show a right order, or apply finish / refund.
    RightOrder {
        order_id: i64,
        event: Option<String>,
    },
    /// List right orders by order id, a page at a time.
    RightOrders {
        /// Only orders with a larger order id (the last one of the previous page).
        #[arg(long, allow_negative_numbers = true)]
        after: Option<i64>,
        #[command(flatten)]
        page: PageLimit,
    },
    /// List idempotency records by scope and key, a page at a time.
    Idempotency {
        /// With --after-key: only records after this scope and key (the previous page's last).
        #[arg(long, requires = "after_key")]
        after_scope: Option<String>,
        #[arg(long, requires = "after_scope")]
        after_key: Option<String>,
        #[command(flatten)]
        page: PageLimit,
    },
    /// Seed the sandbox data (idempotent).
    SeedSandbox,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected NAME=VALUE".to_string())
}

/// An http(s) URL with a host, so that a mistyped one is a usage error (exit 2), not a failed
/// call (exit 1).
fn parse_http_url(s: &str) -> Result<String, String> {
    match reqwest::Url::parse(s) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(s.to_string()),
        Ok(_) => Err("expected an http:// or https:// URL with a host".into()),
        Err(e) => Err(format!("not a URL: {e}")),
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::from_param(Some(s).filter(|s| !s.is_empty()))
        .ok_or_else(|| "expected json or xml".into())
}

/// A whole number of at least 1, for a value parser: clap's error then names the option and
/// shows its usage. With `allow_negative_numbers` on the argument, as clap otherwise reports a
/// negative value as an unexpected argument of its own, `-1`, rather than a bad value of the
/// option before it.
pub(crate) fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    match s.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) if s.starts_with('-') && s[1..].bytes().all(|b| b.is_ascii_digit()) => {
            Err("must be at least 1".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let database_url_given = matches.value_source("database_url") == Some(ValueSource::CommandLine);
    // A misspelt value must not silently log otherwise than asked: say so, then go on with the
    // default (a log setting is no reason to refuse to start).
    let filter = match tracing_subscriber::EnvFilter::try_from_env("TOPGATE_LOG") {
        Ok(filter) => filter,
        Err(e) => {
            if std::env::var_os("TOPGATE_LOG").is_some() {
                eprintln!("note: TOPGATE_LOG is not a log filter ({e}); logging at info");
            }
            tracing_subscriber::EnvFilter::new("info")
        }
    };
    let log_format = std::env::var("TOPGATE_LOG_FORMAT").unwrap_or_default();
    let json_log = log_format.eq_ignore_ascii_case("json");
    if !json_log && !log_format.is_empty() && !log_format.eq_ignore_ascii_case("text") {
        eprintln!("note: TOPGATE_LOG_FORMAT is json or text, not {log_format:?}; logging text");
    }
    // One line per call with request_id, app_key, method, code and latency: with
    // TOPGATE_LOG_FORMAT=json these lines are the machine-readable audit trail of the gateway.
    // Colours only on a terminal: in a file or a log collector the escape codes are noise,
    // and styling every field name of every span cost a measurable share of a cheap call.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json_log {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // A worker about to sleep gives up the read snapshot its lookups were sharing, which would
    // otherwise keep checkpoints from copying the WAL back while it sleeps.
    runtime
        .enable_all()
        .on_thread_park(crate::store::release_thread_snapshots);
    if matches!(cli.command, Command::Serve { .. })
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        runtime.worker_threads(server_worker_threads());
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, database_url_given)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Worker threads of `serve`: twice the cores (`TOKIO_WORKER_THREADS` overrides). Point reads
/// run on the worker that serves the call ([`crate::store::Store::lookup_now`]), and one that
/// waits for a database page the OS has dropped from its cache stops that worker meanwhile:
/// with one worker per core, each such wait idled a core. At a million orders, where a lianbei
/// lookup reads a page that is rarely in SQLite's own cache, twice the workers took lianbei
/// from 39 and 36 % of the `/healthz` ceiling to 52, 43, 43 and 55 % after a pay phase had
/// pushed part of the file out of the OS cache; at a thousand orders the ratios did not move
/// beyond the noise (BENCHMARKS.md).
fn server_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2)
}

fn print_json(value: &Value) {
    print_out(&serde_json::to_string_pretty(value).unwrap_or_default());
}

/// How to run this binary again, for the sandbox banner's one-liner: through cargo when
/// `cargo run` started it (cargo sets `CARGO_MANIFEST_DIR` for what it runs), else as it was
/// invoked (`topgate` from the `PATH`, or its path).
fn this_command() -> String {
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        let profile = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        return format!("cargo run{profile} --");
    }
    std::env::args().next().unwrap_or_else(|| "topgate".into())
}

/// Prints what a long-running command is doing. Nobody reading it (`| head`) is no reason to
/// stop serving, so a failed write is ignored.
fn announce(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Prints a command's result. A reader that stopped early (`| head`) ends the command quietly,
/// as it ends any Unix tool, where `println!` would panic.
pub(crate) fn print_out(text: &str) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{text}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the result: {e}");
        std::process::exit(1);
    }
}

/// `database_url_given`: whether `--database-url` was on the command line (rather than taken
/// from `TOPGATE_DATABASE_URL`).
async fn run(cli: Cli, database_url_given: bool) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    let configured = settings.database_url.take();
    if cli.sandbox && !database_url_given {
        // The sandbox's well-known apps (`test`/`test`, bound to every role) must not land in
        // the database an operator configured for real traffic, as they would with
        // `TOPGATE_DATABASE_URL` exported in the shell: only the command line names the
        // sandbox's database.
        if configured.is_some() {
            eprintln!(
                "note: --sandbox uses {}, not the database_url set by TOPGATE_DATABASE_URL or \
                 the settings file (pass --database-url to choose the sandbox's database)",
                crate::config::DEFAULT_SANDBOX_DATABASE_URL
            );
        }
    } else {
        settings.database_url = cli.database_url.clone().or(configured);
    }
    let open_store = || Store::open(&settings.database_url(cli.sandbox));
    let now_ms = millis(Clock::system().now());
    match cli.command {
        Command::Serve { listen } => {
            if let Some(l) = listen {
                settings.listen = l;
            }
            let server = Server::bind(settings, cli.sandbox, Clock::system()).await?;
            let url = format!("http://{}/router/rest", server.addr);
            let banner = if cli.sandbox {
                // What the database holds now: a secret rotated since the seed is not the one
                // to print (nor shown), and the one-liner then takes it from the environment.
                let (app, other) = server
                    .state
                    .store
                    .read(|tx| {
                        Ok((
                            SeededApp::of(tx, sandbox::APP_KEY, sandbox::SECRET)?,
                            SeededApp::of(tx, sandbox::OTHER_APP_KEY, sandbox::OTHER_SECRET)?,
                        ))
                    })
                    .await?;
                let secret_from_env = if matches!(app, SeededApp::Rotated) {
                    "TOPGATE_APP_SECRET=<its secret> "
                } else {
                    ""
                };
                format!(
                    "topgate sandbox listening on {url}\n\
                     database: {}\n\
                     app_key: {}  {}  session: {}\n\
                     second app (owns nothing): app_key: {}  {}\n\
                     try it: {secret_from_env}{} call alibaba.alisports.lianbei.order.notice --url {url} --param biz_order_id=1000",
                    server.state.store.describe(),
                    sandbox::APP_KEY,
                    app.describe_secret(sandbox::SECRET),
                    sandbox::SESSION,
                    sandbox::OTHER_APP_KEY,
                    other.describe_secret(sandbox::OTHER_SECRET),
                    this_command(),
                )
            } else {
                format!(
                    "topgate listening on {url} ({})",
                    server.state.store.describe()
                )
            };
            announce(&banner);
            server.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::App(cmd) => {
            let store = open_store()?;
            let out = match cmd {
                AppCommand::Create {
                    app_key,
                    secret,
                    name,
                    methods,
                    calls_per_second,
                    supplier_id,
                    partner_id,
                    provider_id,
                    seller_id,
                } => {
                    let body = json!({"app_key": app_key, "secret": secret, "name": name,
                        "methods": (!methods.is_empty()).then_some(methods), "calls_per_second": calls_per_second,
                        "supplier_id": supplier_id, "partner_id": partner_id, "provider_id": provider_id, "seller_id": seller_id});
                    admin(&store, move |tx| ops::create(tx, "apps", &body, now_ms)).await?
                }
                AppCommand::List => admin(&store, ops::list_apps).await?,
                AppCommand::Disable { app_key } => set_enabled(&store, app_key, false).await?,
                AppCommand::Enable { app_key } => set_enabled(&store, app_key, true).await?,
                AppCommand::RotateSecret { app_key } => {
                    admin(&store, move |tx| match apps::rotate_secret(tx, &app_key)? {
                        Some(secret) => Ok(json!({"app_key": app_key, "secret": secret})),
                        None => Err(ops::AdminError::NotFound(format!("app {app_key}"))),
                    })
                    .await?
                }
                AppCommand::Grant {
                    app_key,
                    method,
                    calls_per_second,
                } => {
                    admin(&store, move |tx| {
                        ops::grant(tx, &app_key, &method, calls_per_second)
                    })
                    .await?
                }
                AppCommand::Revoke { app_key, method } => {
                    admin(&store, move |tx| ops::revoke(tx, &app_key, &method)).await?
                }
            };
            print_json(&out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Session(SessionCommand::Create {
            app_key,
            user_id,
            ttl_secs,
        }) => {
            let store = open_store()?;
            let body = json!({"app_key": app_key, "user_id": user_id, "ttl_secs": ttl_secs});
            print_json(&admin(&store, move |tx| ops::create(tx, "sessions", &body, now_ms)).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Session(SessionCommand::Revoke { session_key }) => {
            let store = open_store()?;
            let body = json!({ "session_key": session_key });
            let revoked = admin(&store, move |tx| ops::revoke_session(tx, &body, now_ms)).await?;
            print_json(&revoked);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign {
            explain,
            secret,
            sign_method,
            params,
            body,
        } => {
            let mut set = ParamSet::new();
            for (k, v) in params {
                set.insert(k, v);
            }
            // As the gateway verifies: an empty sign_method is none, so md5.
            let named = set.get_non_empty("sign_method");
            let sign_method = match (sign_method, named.and_then(SignMethod::from_wire)) {
                (Some(chosen), _) => {
                    if named.is_some_and(|m| m != chosen.as_wire()) {
                        eprintln!(
                            "note: the sign_method parameter differs from --sign-method {chosen}"
                        );
                    }
                    chosen
                }
                (None, Some(from_param)) => from_param,
                (None, None) => {
                    if let Some(unknown) = named {
                        eprintln!("note: the gateway refuses sign_method {unknown} (code 25); signed with md5");
                    }
                    SignMethod::Md5
                }
            };
            let canonical = string_to_sign(&set, body.as_deref());
            if explain {
                print_out(&format!("sign_method: {sign_method}"));
                print_out(&format!(
                    "string to sign ({} bytes, parameters sorted by name, `sign` excluded):",
                    canonical.len()
                ));
                print_out(&canonical);
                match sign_method {
                    SignMethod::Md5 => {
                        print_out("digest: MD5(secret + string + secret), uppercase hex")
                    }
                    SignMethod::Hmac => {
                        print_out("digest: HMAC-MD5(key = secret, string), uppercase hex")
                    }
                    SignMethod::HmacSha256 => {
                        print_out("digest: HMAC-SHA256(key = secret, string), uppercase hex")
                    }
                }
            }
            let signature = sign_string(sign_method, &secret, &canonical);
            if explain {
                print_out(&format!("sign: {signature}"));
                if let Some(given) = set.get("sign") {
                    let ok = top_protocol::sign::signatures_match(&signature, given);
                    print_out(&format!(
                        "the sign parameter given {}",
                        if ok {
                            "matches"
                        } else {
                            "does NOT match (code 25)"
                        }
                    ));
                }
            } else {
                print_out(&signature);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Call(args) => call(args).await,
        Command::Bench(args) => crate::bench::main(args, settings.database_url(cli.sandbox)).await,
        Command::Dispatch => {
            let store = open_store()?;
            announce(&format!(
                "topgate dispatcher running ({})",
                store.describe()
            ));
            crate::events::dispatch::run_until_signal(store, settings.events.clone()).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events(cmd) => {
            let store = open_store()?;
            print_json(&events_command(&store, cmd, now_ms).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => {
            let store = open_store()?;
            let out = match cmd {
                AdminCommand::Create { resource, json } => {
                    // Not a clap value parser: clap would echo the text, an app's secret with it.
                    let body: Value = serde_json::from_str(&json)
                        .map_err(|e| anyhow::anyhow!("<JSON> is not valid JSON: {e}"))?;
                    admin(&store, move |tx| ops::create(tx, &resource, &body, now_ms)).await?
                }
                AdminCommand::Trade { tid, event: None } => {
                    admin(&store, move |tx| ops::get_trade(tx, tid)).await?
                }
                AdminCommand::Trade {
                    tid,
                    event: Some(ev),
                } => admin(&store, move |tx| ops::trade_event(tx, tid, &ev, now_ms)).await?,
                AdminCommand::RightOrder {
                    order_id,
                    event: None,
                } => admin(&store, move |tx| ops::get_right_order(tx, order_id)).await?,
                AdminCommand::RightOrder {
                    order_id,
                    event: Some(ev),
                } => {
                    admin(&store, move |tx| {
                        ops::right_order_event(tx, order_id, &ev, now_ms)
                    })
                    .await?
                }
                AdminCommand::RightOrders {
                    after,
                    page: PageLimit { limit },
                } => {
                    let page = ops::RightOrderPage { after, limit };
                    admin(&store, move |tx| ops::list_right_orders(tx, &page)).await?
                }
                AdminCommand::Idempotency {
                    after_scope,
                    after_key,
                    page: PageLimit { limit },
                } => {
                    let page = ops::IdempotencyPage {
                        after_scope,
                        after_key,
                        limit,
                    };
                    admin(&store, move |tx| ops::list_idempotency(tx, &page)).await?
                }
                AdminCommand::SeedSandbox => {
                    admin(&store, move |tx| {
                        Ok(json!({"seeded": sandbox::seed(tx, now_ms)?}))
                    })
                    .await?
                }
            };
            print_json(&out);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn events_command(store: &Store, cmd: EventsCommand, now_ms: i64) -> anyhow::Result<Value> {
    use crate::events::admin as ev;
    Ok(match cmd {
        EventsCommand::List {
            after,
            page: PageLimit { limit },
            entity,
            event_type,
        } => {
            let q = ev::EventQuery {
                after,
                limit,
                entity,
                event_type,
            };
            admin(store, move |tx| ev::list_events(tx, &q)).await?
        }
        EventsCommand::Show { event_id } => {
            admin(store, move |tx| ev::get_event(tx, event_id)).await?
        }
        EventsCommand::Sinks => admin(store, ev::list_sinks).await?,
        EventsCommand::AddWebhook {
            url,
            secret,
            event_types,
            disabled,
        } => {
            let new = ev::NewSink {
                kind: "webhook".into(),
                url: Some(url),
                secret,
                event_types: (!event_types.is_empty()).then_some(event_types),
                enabled: !disabled,
                stream: None,
                subject_prefix: None,
            };
            admin(store, move |tx| ev::create_sink(tx, &new, now_ms)).await?
        }
        EventsCommand::AddNats {
            url,
            stream,
            subject_prefix,
            event_types,
            disabled,
        } => {
            let new = ev::NewSink {
                kind: "nats".into(),
                url: Some(url),
                secret: None,
                event_types: (!event_types.is_empty()).then_some(event_types),
                enabled: !disabled,
                stream: Some(stream),
                subject_prefix: Some(subject_prefix),
            };
            admin(store, move |tx| ev::create_sink(tx, &new, now_ms)).await?
        }
        EventsCommand::Enable { sink_id } => {
            admin(store, move |tx| {
                ev::set_sink_enabled(tx, sink_id, true, now_ms)
            })
            .await?
        }
        EventsCommand::Disable { sink_id } => {
            admin(store, move |tx| {
                ev::set_sink_enabled(tx, sink_id, false, now_ms)
            })
            .await?
        }
        EventsCommand::Deliveries {
            sink_id,
            state,
            after,
            page: PageLimit { limit },
        } => {
            admin(store, move |tx| {
                ev::sink_deliveries(tx, sink_id, state.as_deref(), after, limit)
            })
            .await?
        }
        EventsCommand::Attempts {
            event: Some(event_id),
            ..
        } => admin(store, move |tx| ev::event_attempts(tx, event_id)).await?,
        EventsCommand::Attempts {
            sink,
            page: PageLimit { limit },
            ..
        } => {
            let sink_id = sink.ok_or_else(|| anyhow::anyhow!("give --event or --sink"))?;
            admin(store, move |tx| ev::sink_attempts(tx, sink_id, limit)).await?
        }
        EventsCommand::Redeliver {
            sink_id,
            event,
            dead,
            from_event,
        } => {
            let what = ev::Redeliver {
                event_id: event,
                dead,
                from_event_id: from_event,
            };
            admin(store, move |tx| ev::redeliver(tx, sink_id, &what, now_ms)).await?
        }
    })
}

async fn set_enabled(store: &Store, app_key: String, enabled: bool) -> anyhow::Result<Value> {
    admin(store, move |tx| {
        if apps::set_enabled(tx, &app_key, enabled)? {
            Ok(json!({"app_key": app_key, "enabled": enabled}))
        } else {
            Err(ops::AdminError::NotFound(format!("app {app_key}")))
        }
    })
    .await
}

/// Runs an admin operation in one write transaction; a refusal changes nothing.
async fn admin<F>(store: &Store, f: F) -> anyhow::Result<Value>
where
    F: FnMut(&mut dyn crate::store::Tx) -> Result<Value, ops::AdminError> + Send + 'static,
{
    match store.attempt(ops::as_job(f)).await {
        Ok(outcome) => outcome.map_err(|e| anyhow::anyhow!(e)),
        Err(e) => Err(anyhow::anyhow!(ops::AdminError::from(e))),
    }
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let format = args.format;
    let pretty = args.pretty;
    let mut builder = top_sdk::TopClient::builder(args.url, args.app_key, args.secret)
        .sign_method(args.sign_method)
        .format(format)
        .simplify(args.simplify);
    if let Some(session) = args.session {
        builder = builder.session(session);
    }
    let client = builder.build()?;
    let params = args.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    match client.call(&args.method, params).await {
        Ok(response) => {
            match format {
                Format::Json if pretty => match serde_json::from_str::<Value>(&response.raw) {
                    Ok(v) => print_json(&v),
                    Err(_) => print_out(&response.raw),
                },
                _ => print_out(&response.raw),
            }
            Ok(ExitCode::SUCCESS)
        }
        // The SDK's wording names every field the answer had: `TOP error 50: Remote service
        // error; sub_code isv.missing-parameter; sub_msg …; request_id …`.
        Err(e @ top_sdk::Error::Top { .. }) => {
            eprintln!("{e}");
            Ok(ExitCode::from(EXIT_TOP_ERROR))
        }
        Err(e) => Err(e.into()),
    }
}
