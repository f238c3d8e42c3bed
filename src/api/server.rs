//! The tonic server: the token service, gRPC health, server reflection, and a shutdown that
//! flips health to NOT_SERVING, drains in-flight calls and stops.
//!
//! [`Server::serve`] takes bound listeners and a shutdown future, so `main` hands it the
//! configured addresses and SIGTERM/Ctrl-C while tests hand it `127.0.0.1:0` and a oneshot
//! channel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_reflection::server as reflection;

use crate::api::admin::KeyAdminService;
use crate::api::metrics::Metrics;
use crate::api::service::TokenAuthorityService;
use crate::api::tls::{Alpn, Incoming, Tls};
use crate::core::clock::Clock;
use crate::proto::key_admin_server::KeyAdminServer;
use crate::proto::token_authority_server::TokenAuthorityServer;
use crate::state::config::Config;
use crate::state::live::Live;
use crate::state::store::Store;

/// The gRPC service name that health reports for the token service.
pub const SERVICE_NAME: &str = "tokenauthority.v1.TokenAuthority";

/// The gRPC service name of key administration.
pub const ADMIN_SERVICE_NAME: &str = "tokenauthority.v1.KeyAdmin";

/// The sockets the service answers on.
pub struct Listeners {
    /// gRPC: the token service, health, reflection and (if enabled) key administration.
    pub grpc: TcpListener,
    /// HTTP: JWKS and OpenID discovery; `None` when disabled.
    pub http: Option<TcpListener>,
}

/// A service ready to serve: configuration checked, managed keys on schedule, profiles built.
pub struct Server {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    /// Whether a background task keeps managed keys on schedule (tests call `Live::tick`).
    rotation_task: bool,
    origin: String,
    admin: bool,
    max_request_bytes: usize,
    drain_timeout: Duration,
    store: Arc<Store>,
}

impl Server {
    /// Opens managed keys (generating what the schedule needs) and builds the profiles.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
        let origin = config.origin.clone();
        let admin = config.admin;
        let max_request_bytes = config.max_request_bytes;
        let drain_timeout = config.drain_timeout;
        if config.allow_unauthenticated {
            if config.callers.is_empty() {
                tracing::warn!(
                    "[server] allow_unauthenticated = true: calls are not authenticated, so anyone who reaches the gRPC port can issue tokens for any subject; configure [[callers]] to stop this"
                );
            } else {
                tracing::warn!(
                    "[server] allow_unauthenticated has no effect: [[callers]] are configured, so every call must prove one"
                );
            }
        }
        tracing::info!(
            callers = config.callers.policy().callers().len(),
            bearer_profile = config.callers.caller_profile().unwrap_or("(none)"),
            "caller authentication"
        );
        for key in config.keys.sorted() {
            tracing::info!(kid = key.id().as_str(), alg = %key.algorithm(), can_sign = key.can_sign(), "key loaded");
        }
        let store = Arc::new(Store::open(config.store.as_ref(), clock.clone())?);
        let live = Live::start(config, clock)?;
        Ok(Server {
            metrics: Arc::new(Metrics::new(live.clone())),
            live,
            rotation_task: true,
            origin,
            admin,
            max_request_bytes,
            drain_timeout,
            store,
        })
    }

    /// Leaves managed keys to explicit [`Live::tick`] calls instead of a background task: for
    /// tests on a manual clock, where a task waking in real time would race the test.
    pub fn without_rotation_task(mut self) -> Server {
        self.rotation_task = false;
        self
    }

    /// The live profiles, for reload (SIGHUP) and for tests that drive rotation by hand.
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// Serves until `shutdown` completes, then flips health to NOT_SERVING, drains and returns.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listeners
            .grpc
            .local_addr()
            .context("reading the bound address")?;
        let http_addr: Option<SocketAddr> = match &listeners.http {
            Some(l) => Some(l.local_addr().context("reading the bound HTTP address")?),
            None => None,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        let routes = self.routes(health_service)?;

        self.log_ready_profiles();
        // Federated profiles try their first fetch before the service answers, each for at most
        // its jwks_timeout; one that fails still serves, refusing tokens with the reason until a
        // later fetch succeeds, so one issuer being down never keeps the service from starting.
        self.live.refresh_remote_keys().await;
        // Keys are loaded and profiles built, so the service can answer from here on.
        set_health(&health, ServingStatus::Serving, self.served_names()).await;
        self.live.serving_on(addr);
        self.log_listening(addr, http_addr);

        // TLS (or not) is chosen here, once: a reload can change the certificate, not whether
        // the listeners speak TLS.
        let grpc = Incoming::new(listeners.grpc, Tls::for_listener(&self.live, Alpn::H2)?)
            .context("accepting gRPC connections")?;
        let http = match listeners.http {
            Some(listener) => Some(
                Incoming::new(listener, Tls::for_listener(&self.live, Alpn::Http11)?)
                    .context("accepting HTTP connections")?,
            ),
            None => None,
        };
        let stopping = CancellationToken::new();
        let tasks = self.spawn_tasks(http, &stopping);
        let upkeep = tokio::spawn(crate::api::lifecycle::upkeep(
            self.store.clone(),
            health.clone(),
            stopping.clone().cancelled_owned(),
        ));
        let (draining_tx, draining_rx) = oneshot::channel();
        let signal = shutdown_signal(shutdown, health, stopping, draining_tx);
        let server = routes.serve_with_incoming_shutdown(grpc, signal);
        serve_until_drained(server, draining_rx, self.drain_timeout).await?;
        tasks.stop(self.drain_timeout).await;
        let _ = upkeep.await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Every gRPC service this server answers: health, reflection, tokens and key admin.
    fn routes(&self, health: HealthServer<impl Health>) -> anyhow::Result<Router> {
        let (reflection_v1, reflection_v1alpha) = reflection_services(self.admin)?;
        let token_service = TokenAuthorityServer::new(
            TokenAuthorityService::new(self.live.clone(), self.metrics.clone())
                .with_store(self.store.clone()),
        )
        .max_decoding_message_size(self.max_request_bytes);
        // Key administration is off unless asked for; off, it still answers, to say so (a bare
        // UNIMPLEMENTED would leave operators guessing). On, its callers need a KeyAdmin grant.
        let admin_service = KeyAdminServer::new(KeyAdminService::new(
            self.live.clone(),
            self.admin,
            self.metrics.clone(),
        ))
        .max_decoding_message_size(self.max_request_bytes);
        Ok(tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(token_service)
            .add_service(admin_service))
    }

    /// The services health reports as SERVING: the server, tokens, and key admin when enabled.
    fn served_names(&self) -> &'static [&'static str] {
        if self.admin {
            &["", SERVICE_NAME, ADMIN_SERVICE_NAME]
        } else {
            &["", SERVICE_NAME]
        }
    }

    fn log_ready_profiles(&self) {
        let snapshot = self.live.current();
        let now = self.live.clock().unix_seconds();
        for profile in snapshot.profiles.sorted() {
            let verify: Vec<&str> = profile.verify_keys().map(|k| k.id().as_str()).collect();
            tracing::info!(
                profile = profile.name(),
                signing_key = profile.signer_at(now).map_or("(none now)", |s| s.key().id().as_str()),
                managed = profile.signers().iter().any(|s| s.is_managed()),
                verify_keys = %verify.join(","),
                remote_jwks = profile.remote_jwks().unwrap_or("-"),
                login_url = profile.has_login_url(),
                "profile ready"
            );
        }
    }

    fn log_listening(&self, addr: SocketAddr, http_addr: Option<SocketAddr>) {
        let tls = self.live.tls();
        if let Some(material) = &tls {
            let leaf = material.leaf();
            tracing::info!(
                cert_file = %material.files().cert_file.display(),
                subject = %leaf.subject,
                names = %leaf.names.join(","),
                not_after = %leaf.not_after,
                "TLS certificate loaded"
            );
        }
        tracing::info!(
            %addr,
            http = %http_addr.map_or("off".to_owned(), |a| a.to_string()),
            tls = match &tls {
                None => "off",
                Some(m) if m.client_verifier().is_some() => "on, client certificates requested",
                Some(_) => "on",
            },
            admin = self.admin,
            config = %self.origin,
            profiles = self.live.current().profiles.len(),
            "listening"
        );
    }

    /// Starts the rotation task (unless tests drive rotation), the watch on the TLS files (if
    /// TLS is on) and the HTTP listener (if configured); all stop when `stopping` is cancelled.
    fn spawn_tasks(&self, http: Option<Incoming>, stopping: &CancellationToken) -> Tasks {
        let tls_watch = self.live.tls().is_some().then(|| {
            tokio::spawn(
                self.live
                    .clone()
                    .run_tls_watch(stopping.clone().cancelled_owned()),
            )
        });
        let rotation = self.rotation_task.then(|| {
            tokio::spawn(
                self.live
                    .clone()
                    .run_rotation(stopping.clone().cancelled_owned()),
            )
        });
        let http = http.map(|listener| {
            let live = self.live.clone();
            let metrics = self.metrics.clone();
            let stop = stopping.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) = crate::api::http::serve(live, metrics, listener, stop).await {
                    tracing::error!(error = %e, "the HTTP listener failed");
                }
            })
        });
        Tasks {
            rotation,
            tls_watch,
            http,
        }
    }
}

/// The tasks that run beside the gRPC server.
struct Tasks {
    rotation: Option<JoinHandle<()>>,
    tls_watch: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stops rotation at once and gives the HTTP listener at most `drain_timeout` to finish.
    async fn stop(self, drain_timeout: Duration) {
        for task in [self.rotation, self.tls_watch].into_iter().flatten() {
            task.abort();
        }
        if let Some(http) = self.http {
            // The HTTP documents are small and stateless; give them the same drain time at most.
            let _ = tokio::time::timeout(drain_timeout, http).await;
        }
    }
}

/// Both reflection versions, listing only what is served: KeyAdmin shares the proto file but
/// may be off.
fn reflection_services(
    admin: bool,
) -> anyhow::Result<(
    reflection::v1::ServerReflectionServer<impl reflection::v1::ServerReflection>,
    reflection::v1alpha::ServerReflectionServer<impl reflection::v1alpha::ServerReflection>,
)> {
    let builder = || {
        let builder = reflection::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
            .with_service_name(SERVICE_NAME);
        if admin {
            builder.with_service_name(ADMIN_SERVICE_NAME)
        } else {
            builder
        }
    };
    // Each version also describes the other, since both are listed.
    let v1 = builder()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    // grpcurl and many tools still speak only the v1alpha reflection protocol.
    let v1alpha = builder()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service")?;
    Ok((v1, v1alpha))
}

async fn set_health(health: &HealthReporter, status: ServingStatus, services: &[&str]) {
    for service in services {
        health.set_service_status(*service, status).await;
    }
}

/// Completes after `shutdown`, once health says NOT_SERVING and the other tasks were told to
/// stop; `draining` then starts the drain clock.
async fn shutdown_signal(
    shutdown: impl Future<Output = ()>,
    health: HealthReporter,
    stopping: CancellationToken,
    draining: oneshot::Sender<()>,
) {
    shutdown.await;
    // Health flips first, so load balancers stop sending before the listener closes. KeyAdmin
    // is flipped even when off, so a check on it says NOT_SERVING rather than unknown.
    let all = ["", SERVICE_NAME, ADMIN_SERVICE_NAME];
    set_health(&health, ServingStatus::NotServing, &all).await;
    tracing::info!("shutting down: health is NOT_SERVING, draining in-flight calls");
    stopping.cancel();
    let _ = draining.send(());
}

/// Runs `server` until it returns, or until calls are still open `drain_timeout` after
/// `draining` fired, whichever comes first.
async fn serve_until_drained(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    draining: oneshot::Receiver<()>,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        result = server => result.context("serving gRPC")?,
        () = async move {
            if draining.await.is_ok() {
                tokio::time::sleep(drain_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(?drain_timeout, "calls still open after the drain timeout; closing them");
        }
    }
    Ok(())
}
