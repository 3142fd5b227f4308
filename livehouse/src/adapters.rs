//! The small adapters that let one role's boundary trait be served by another role, used when
//! the binary wires roles together. Each is a thin translation; no logic of its own.

use async_trait::async_trait;
use livehouse_core::events::{GatewayInfo, RoomBatch};
use livehouse_im_core::Gateway;
use livehouse_living::LivingService;
use livehouse_media::{MediaServer, Saved, StreamAuth};
use livehouse_msg::GatewayDelivery;
use std::sync::Arc;

/// Publish checks of the media server (and the nginx-rtmp callbacks) answered by the rooms
/// service: a stream key is valid while its room is live.
pub struct RoomsStreamAuth(pub LivingService);

#[async_trait]
impl StreamAuth for RoomsStreamAuth {
    async fn authorize_publish(&self, stream_key: &str) -> Result<i64, String> {
        match self.0.by_stream_key(stream_key).await {
            Ok(Some(room)) => Ok(room.id),
            Ok(None) => Err("unknown stream key, or its room is not live".into()),
            Err(e) => Err(format!("rooms are unavailable: {e}")),
        }
    }

    async fn set_streaming(&self, room_id: i64, streaming: bool) {
        if let Err(e) = self.0.set_streaming(room_id, streaming).await {
            tracing::warn!(room_id, streaming, error = %e, "could not record the streaming state");
        }
    }

    async fn is_room_live(&self, room_id: i64) -> bool {
        match self.0.get(room_id).await {
            Ok(room) => room.is_some(),
            // Do not cut a publisher because the database hiccupped.
            Err(e) => {
                tracing::warn!(room_id, error = %e, "room liveness check failed; keeping the stream");
                true
            }
        }
    }

    async fn wants_recording(&self, room_id: i64) -> bool {
        matches!(self.0.get(room_id).await, Ok(Some(room)) if room.record)
    }

    async fn record_saved(&self, saved: Saved) {
        let replay = livehouse_living::Replay {
            duration_ms: i64::try_from(saved.duration_ms).unwrap_or(i64::MAX),
            size_bytes: i64::try_from(saved.size_bytes).unwrap_or(i64::MAX),
        };
        if let Err(e) = self.0.save_replay(saved.room_id, replay).await {
            tracing::warn!(room_id = saved.room_id, error = %e, "could not record the saved recording");
        }
    }

    async fn record_deleted(&self, room_id: i64) {
        if let Err(e) = self.0.delete_replay(room_id).await {
            tracing::warn!(room_id, error = %e, "could not forget the deleted recording");
        }
    }
}

/// `/living/streamHealth` answered by the media server of the same process.
pub struct MediaHealth(pub Arc<MediaServer>);

impl livehouse_api::StreamHealthSource for MediaHealth {
    fn stream_health(&self, room_id: i64, max_bitrate_kbps: u32) -> Option<serde_json::Value> {
        self.0
            .stream_health(room_id, max_bitrate_kbps)
            .and_then(|r| serde_json::to_value(r).ok())
    }
}

/// `msg` delivering to the gateway in the same process without a network hop; batches for
/// other gateways go over HTTP.
pub struct LocalFirstDelivery {
    pub local: Arc<Gateway>,
    pub remote: livehouse_msg::HttpDelivery,
}

#[async_trait]
impl GatewayDelivery for LocalFirstDelivery {
    async fn deliver(&self, gateway: &GatewayInfo, batches: &[RoomBatch]) -> anyhow::Result<()> {
        if gateway.id == self.local.config().gateway_id {
            self.local.push(batches.to_vec()).await;
            Ok(())
        } else {
            self.remote.deliver(gateway, batches).await
        }
    }
}
