//! The tonic server: the token service, gRPC health, server reflection, and a shutdown that
//! flips health to NOT_SERVING, drains in-flight calls and stops.
//!
//! [`serve`] takes a bound listener and a shutdown future, so `main` hands it the configured
//! address and SIGTERM/Ctrl-C while tests hand it `127.0.0.1:0` and a oneshot channel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::api::admin::KeyAdminService;
use crate::api::service::TokenAuthorityService;
use crate::core::clock::Clock;
use crate::proto::key_admin_server::KeyAdminServer;
use crate::proto::token_authority_server::TokenAuthorityServer;
use crate::state::config::Config;
use crate::state::live::Live;

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
    /// Whether a background task keeps managed keys on schedule (tests call `Live::tick`).
    rotation_task: bool,
    origin: String,
    admin: bool,
    max_request_bytes: usize,
    drain_timeout: Duration,
}

/// Serves `config` on `listener` (gRPC only) until `shutdown` completes, then drains and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = Listeners {
        grpc: listener,
        http: None,
    };
    Server::new(config, clock)?.serve(listeners, shutdown).await
}

impl Server {
    /// Opens managed keys (generating what the schedule needs) and builds the profiles.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
        let origin = config.origin.clone();
        let admin = config.admin;
        let max_request_bytes = config.max_request_bytes;
        let drain_timeout = config.drain_timeout;
        for key in config.keys.sorted() {
            tracing::info!(kid = ?key.id(), alg = %key.algorithm(), can_sign = key.can_sign(), "key loaded");
        }
        let live = Live::start(config, clock)?;
        Ok(Server {
            live,
            rotation_task: true,
            origin,
            admin,
            max_request_bytes,
            drain_timeout,
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
        let Server {
            live,
            rotation_task,
            origin,
            admin,
            max_request_bytes,
            drain_timeout,
        } = self;
        let listener = listeners.grpc;
        let addr = listener.local_addr().context("reading the bound address")?;
        let http_addr: Option<SocketAddr> = match &listeners.http {
            Some(l) => Some(l.local_addr().context("reading the bound HTTP address")?),
            None => None,
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        // Reflection lists only what is served: KeyAdmin shares the proto file but may be off.
        let reflection = || {
            let builder = tonic_reflection::server::Builder::configure()
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
        let reflection_v1 = reflection()
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .build_v1()
            .context("building the reflection service")?;
        // grpcurl and many tools still speak only the v1alpha reflection protocol.
        let reflection_v1alpha = reflection()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building the reflection service")?;
        let token_service = TokenAuthorityServer::new(TokenAuthorityService::new(live.clone()))
            .max_decoding_message_size(max_request_bytes);
        // Until callers are authenticated, key administration is off unless asked for; off, it
        // still answers, to say so (a bare UNIMPLEMENTED would leave operators guessing).
        let admin_service = KeyAdminServer::new(KeyAdminService::new(live.clone(), admin))
            .max_decoding_message_size(max_request_bytes);

        {
            let snapshot = live.current();
            let now = live.clock().unix_seconds();
            for profile in snapshot.profiles.sorted() {
                let verify: Vec<&str> = profile.verify_keys().map(|k| k.id().as_str()).collect();
                tracing::info!(
                    profile = profile.name(),
                    signing_key = profile.signer_at(now).map_or("(none now)", |s| s.key().id().as_str()),
                    managed = profile.signers().iter().any(|s| s.is_managed()),
                    verify_keys = %verify.join(","),
                    login_url = profile.has_login_url(),
                    "profile ready"
                );
            }
        }
        let profiles = live.current().profiles.len();
        // Keys are loaded and profiles built, so the service can answer from here on.
        health.set_service_status("", ServingStatus::Serving).await;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::Serving)
            .await;
        if admin {
            health
                .set_service_status(ADMIN_SERVICE_NAME, ServingStatus::Serving)
                .await;
        }
        tracing::info!(
            %addr,
            http = %http_addr.map_or("off".to_owned(), |a| a.to_string()),
            admin,
            config = %origin,
            profiles,
            "listening"
        );

        let stopping = CancellationToken::new();
        let rotation = rotation_task.then(|| {
            tokio::spawn(
                live.clone()
                    .run_rotation(stopping.clone().cancelled_owned()),
            )
        });
        let http = listeners.http.map(|listener| {
            let live = live.clone();
            let stop = stopping.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) = crate::api::http::serve(live, listener, stop).await {
                    tracing::error!(error = %e, "the HTTP listener failed");
                }
            })
        });

        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let reporter = health.clone();
        let signal = async move {
            shutdown.await;
            // Health flips first, so load balancers stop sending before the listener closes.
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status(ADMIN_SERVICE_NAME, ServingStatus::NotServing)
                .await;
            tracing::info!("shutting down: health is NOT_SERVING, draining in-flight calls");
            stopping.cancel();
            let _ = draining_tx.send(());
        };
        // Small gRPC answers must not wait for Nagle's algorithm (measured: 44 ms per Issue call
        // under load without this). Server::tcp_nodelay only covers listeners tonic binds itself.
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            if let Ok(stream) = &conn
                && let Err(e) = stream.set_nodelay(true)
            {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
            conn
        });
        let server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(token_service)
            .add_service(admin_service)
            .serve_with_incoming_shutdown(incoming, signal);

        tokio::select! {
            result = server => result.context("serving gRPC")?,
            () = async move {
                if draining_rx.await.is_ok() {
                    tokio::time::sleep(drain_timeout).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(?drain_timeout, "calls still open after the drain timeout; closing them");
            }
        }
        if let Some(rotation) = rotation {
            rotation.abort();
        }
        if let Some(http) = http {
            // The HTTP documents are small and stateless; give them the same drain time at most.
            let _ = tokio::time::timeout(drain_timeout, http).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
