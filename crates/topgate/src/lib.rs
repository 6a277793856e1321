//! topgate: a Taobao Open Platform `router/rest` gateway and stateful sandbox for four partner
//! APIs (alicom supplier notify, alisports lianbei order notice, diantao right pay notify,
//! wt opentrade result callback).
//!
//! Layout: [`gateway`] (HTTP, checks, dispatch), [`api`] (one module per API), [`trades`] (the
//! shared trade state machine), [`apps`] (apps and sessions), [`store`] (the database),
//! [`admin`] (admin API and operations), [`sandbox`] (the seed), [`cli`] (the `topgate` binary).

pub mod admin;
pub mod api;
pub mod apps;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod events;
pub mod gateway;
pub mod sandbox;
pub mod store;
pub mod trades;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clock::Clock;
use config::Settings;
use gateway::AppState;
use store::Store;

/// A server bound to a socket, not yet serving (tests bind port 0 and read the address).
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    listener: tokio::net::TcpListener,
}

impl Server {
    /// Opens the store, seeds the sandbox when asked, and binds `settings.listen`.
    pub async fn bind(settings: Settings, sandbox: bool, clock: Clock) -> anyhow::Result<Self> {
        let store = Store::open(&settings.database_url(sandbox))?;
        if sandbox {
            let now = clock::millis(clock.now());
            let seeded = store
                .attempt(move |tx| Ok(sandbox::seed(tx, now)))
                .await?
                .map_err(|e| anyhow::anyhow!("sandbox seed failed: {e}"))?;
            tracing::info!(seeded, "sandbox ready");
        }
        // The address may come from a flag, the file or the environment: say which was used.
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let state = AppState::new(store, settings, clock);
        Ok(Self {
            addr,
            state,
            listener,
        })
    }

    /// Serves until SIGINT or SIGTERM, with the event dispatcher in the background unless
    /// `dispatcher = false`. On the signal the dispatcher stops claiming work at once, while the
    /// server lets calls in flight finish (which may take up to the read timeout); then the
    /// dispatcher's own attempts in flight are recorded and its leases released.
    pub async fn run(self) -> std::io::Result<()> {
        let dispatcher = self.state.settings.dispatcher.then(|| {
            events::dispatch::spawn(self.state.store.clone(), self.state.settings.events.clone())
        });
        let signalled = async {
            gateway::shutdown_signal().await;
            tracing::info!("shutting down");
            if let Some(dispatcher) = &dispatcher {
                dispatcher.stop();
            }
        };
        let served = gateway::serve_until(self.listener, self.state, signalled).await;
        if let Some(dispatcher) = dispatcher {
            dispatcher.shutdown().await;
        }
        served
    }
}
