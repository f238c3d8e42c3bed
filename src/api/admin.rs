//! The gRPC key administration service, `tokenauthority.v1.KeyAdmin`: proto ↔ [`Live`] and
//! nothing else. Served only when `[server] admin = true` (see the README on why).

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::api::audit::Trail;
use crate::api::auth::{self, CallContext};
use crate::api::convert::{profile_keys, system_timestamp};
use crate::api::error::{ApiError, UnknownProfile};
use crate::api::metrics::{Metrics, Outcome};
use crate::api::service::finish;
use crate::core::keys::KeyId;
use crate::core::policy::{Call, Rpc};
use crate::core::profile::Profile;
use crate::proto;
use crate::proto::key_admin_server::KeyAdmin;
use crate::state::config::Audit;
use crate::state::live::Live;

/// Answers `tokenauthority.v1.KeyAdmin`.
pub struct KeyAdminService {
    live: Arc<Live>,
    enabled: bool,
    metrics: Arc<Metrics>,
}

/// What a caller of a disabled admin service is told.
const DISABLED: &str = "tokenauthority.v1.KeyAdmin is disabled on this server: it is served only when the configuration says [server] admin = true (and, with [[callers]] configured, only to a caller allowed \"KeyAdmin/*\" or the RPC)";

impl KeyAdminService {
    /// Administers the live profiles; when not `enabled`, every call is refused with
    /// UNIMPLEMENTED and a message saying how to enable it.
    pub fn new(live: Arc<Live>, enabled: bool, metrics: Arc<Metrics>) -> KeyAdminService {
        KeyAdminService {
            live,
            enabled,
            metrics,
        }
    }

    /// Counts the call, then logs, audits and answers it. ListKeys and Reload span every
    /// profile, so their profile label is empty.
    fn counted<T>(
        &self,
        rpc: &'static str,
        profile: String,
        call: (Trail, &Audit, Instant),
        result: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let (trail, audit, started) = call;
        self.metrics
            .observe_call(rpc, profile, Outcome::of(&result), started);
        finish(trail, audit, started, result)
    }

    fn check_enabled(&self) -> Result<(), Status> {
        if self.enabled {
            Ok(())
        } else {
            Err(Status::unimplemented(DISABLED))
        }
    }

    /// Authenticates the call and checks its caller may make it; every KeyAdmin RPC needs an
    /// explicit `KeyAdmin/…` grant.
    fn admit(
        &self,
        context: &CallContext,
        trail: &mut Trail,
        rpc: Rpc,
        profile: &str,
    ) -> Result<(), ApiError> {
        let snapshot = self.live.current();
        let who = auth::authenticate(&snapshot, context, self.live.clock().now())?;
        trail.who(&who);
        auth::authorize(&snapshot, &who, &Call::of(rpc, profile))
    }

    fn list_inner(&self, req: proto::ListKeysRequest) -> Result<proto::ListKeysResponse, ApiError> {
        let snapshot = self.live.current();
        let now = self.live.clock().unix_seconds();
        let profiles: Vec<&Arc<Profile>> = if req.profile.is_empty() {
            snapshot.profiles.sorted()
        } else {
            let profile = snapshot
                .profiles
                .get(&req.profile)
                .ok_or_else(|| UnknownProfile::named(&req.profile))?;
            vec![profile]
        };
        let status = self.live.reload_status();
        Ok(proto::ListKeysResponse {
            profiles: profiles.iter().map(|p| profile_keys(p, now)).collect(),
            config_origin: snapshot.origin.clone(),
            config_loaded_at: Some(system_timestamp(snapshot.loaded_at)),
            last_reload_at: status.attempted_at.map(system_timestamp),
            last_reload_error: status.error.unwrap_or_default(),
        })
    }

    async fn rotate_inner(
        &self,
        req: proto::RotateKeyRequest,
    ) -> Result<proto::RotateKeyResponse, ApiError> {
        let rotated = self.live.rotate(&req.profile, req.revoke_previous).await?;
        let snapshot = self.live.current();
        let keys = snapshot
            .profiles
            .get(&req.profile)
            .map(|p| profile_keys(p, self.live.clock().unix_seconds()));
        Ok(proto::RotateKeyResponse {
            new_key_id: rotated.new_key.to_string(),
            revoked_key_ids: rotated.revoked.iter().map(KeyId::to_string).collect(),
            keys,
        })
    }

    async fn reload_inner(&self) -> Result<proto::ReloadResponse, ApiError> {
        let snapshot = self.live.reload().await?;
        Ok(proto::ReloadResponse {
            config_origin: snapshot.origin.clone(),
            profiles: snapshot
                .profiles
                .sorted()
                .iter()
                .map(|p| p.name().to_owned())
                .collect(),
            loaded_at: Some(system_timestamp(snapshot.loaded_at)),
        })
    }
}

#[tonic::async_trait]
impl KeyAdmin for KeyAdminService {
    async fn list_keys(
        &self,
        request: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        self.check_enabled()?;
        let started = Instant::now();
        let (context, request) = CallContext::split(request);
        let audit = self.live.current().audit.clone();
        let mut trail = Trail::new(Rpc::ListKeys, &request.profile);
        let result = self
            .admit(&context, &mut trail, Rpc::ListKeys, &request.profile)
            .and_then(|()| self.list_inner(request));
        self.counted("ListKeys", String::new(), (trail, &audit, started), result)
    }

    async fn rotate_key(
        &self,
        request: Request<proto::RotateKeyRequest>,
    ) -> Result<Response<proto::RotateKeyResponse>, Status> {
        self.check_enabled()?;
        let started = Instant::now();
        let (context, request) = CallContext::split(request);
        let snapshot = self.live.current();
        let profile = Metrics::profile_label(&snapshot, &request.profile);
        let audit = snapshot.audit.clone();
        drop(snapshot);
        let mut trail = Trail::new(Rpc::RotateKey, &request.profile);
        let result = match self.admit(&context, &mut trail, Rpc::RotateKey, &request.profile) {
            Ok(()) => self.rotate_inner(request).await,
            Err(e) => Err(e),
        };
        if let Ok(answer) = &result {
            trail.key(&answer.new_key_id);
            trail.outcome("rotated");
        }
        self.counted("RotateKey", profile, (trail, &audit, started), result)
    }

    async fn reload(
        &self,
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadResponse>, Status> {
        self.check_enabled()?;
        let started = Instant::now();
        let (context, _) = CallContext::split(request);
        let audit = self.live.current().audit.clone();
        let mut trail = Trail::new(Rpc::Reload, "");
        let result = match self.admit(&context, &mut trail, Rpc::Reload, "") {
            Ok(()) => self.reload_inner().await,
            Err(e) => Err(e),
        };
        if result.is_ok() {
            trail.outcome("reloaded");
        }
        self.counted("Reload", String::new(), (trail, &audit, started), result)
    }
}
