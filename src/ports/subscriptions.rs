//! The subscription store: watched channels, their poll state, and which process polls each
//! (leased like jobs, so that one process polls a subscription at a time).

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::PortResult;
use crate::domain::ChannelId;
use crate::domain::subscriptions::{PollRecord, Subscription};

#[async_trait]
pub trait SubscriptionStore: Send + Sync + 'static {
    /// Records a new subscription; [`super::PortError::AlreadyExists`] when the channel has one.
    async fn create_subscription(
        &self,
        channel_id: &ChannelId,
        interval: Duration,
        backfill: bool,
    ) -> PortResult<Subscription>;
    async fn get_subscription(&self, id: Uuid) -> PortResult<Option<Subscription>>;
    /// Oldest first.
    async fn list_subscriptions(&self) -> PortResult<Vec<Subscription>>;
    /// False when there was none.
    async fn delete_subscription(&self, id: Uuid) -> PortResult<bool>;
    /// The subscriptions nobody holds a live lease on.
    async fn claimable_subscriptions(&self) -> PortResult<Vec<Uuid>>;
    /// Takes (or extends) `owner`'s lease on a subscription; false when another owner holds a live
    /// one, or there is none.
    async fn claim_subscription(&self, id: Uuid, owner: &str, lease: Duration) -> PortResult<bool>;
    /// Extends every lease `owner` holds; returns those subscriptions, each with whether a poll was
    /// asked for since (a WebSub notification), clearing the ask.
    async fn renew_subscription_leases(&self, owner: &str, lease: Duration) -> PortResult<Vec<(Uuid, bool)>>;
    /// Gives up `owner`'s lease, so that another process may claim it at once.
    async fn release_subscription(&self, id: Uuid, owner: &str) -> PortResult<()>;
    /// Asks whoever polls the subscription to poll now; false when there is none.
    async fn request_poll(&self, id: Uuid) -> PortResult<bool>;
    /// Records a poll made by `owner`, and creates its job (if any) in the same transaction: a
    /// running job, leased to `owner`, with exactly the record's videos. Refused with
    /// [`super::PortError::OwnershipLost`] unless `owner` holds a live lease on the subscription
    /// (another process polls it now), and with [`super::PortError::NotFound`] when it was deleted.
    async fn record_poll(&self, id: Uuid, owner: &str, lease: Duration, poll: &PollRecord) -> PortResult<()>;
}
