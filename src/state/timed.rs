//! A [`StateStore`] that times every call of the store it wraps into
//! `fedsts_state_store_duration_seconds{operation, result}`: the latency the policies see, Redis
//! round trips included, without either backend knowing about metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{AttemptCount, AttemptRule, StateError, StateStore, TokenRule, TokenTake};
use crate::metrics::Metrics;

/// `inner`, timed.
#[derive(Debug)]
pub struct TimedStore {
    inner: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    /// Times every call of `inner` into `metrics`.
    pub fn new(inner: Arc<dyn StateStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .state_store_call(operation, result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl StateStore for TimedStore {
    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        self.timed(
            "set_if_absent",
            self.inner.set_if_absent(key, value, ttl, now),
        )
        .await
    }

    async fn get(&self, key: &str, now: OffsetDateTime) -> Result<Option<String>, StateError> {
        self.timed("get", self.inner.get(key, now)).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        let call = self.inner.compare_and_swap(key, expected, new, ttl, now);
        self.timed("compare_and_swap", call).await
    }

    async fn count_attempt(
        &self,
        key: &str,
        rule: &AttemptRule,
        now: OffsetDateTime,
    ) -> Result<AttemptCount, StateError> {
        self.timed("count_attempt", self.inner.count_attempt(key, rule, now))
            .await
    }

    async fn give_back_attempt(
        &self,
        key: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        self.timed(
            "give_back_attempt",
            self.inner.give_back_attempt(key, ttl, now),
        )
        .await
    }

    async fn take_token(
        &self,
        key: &str,
        rule: &TokenRule,
        now: OffsetDateTime,
    ) -> Result<TokenTake, StateError> {
        self.timed("take_token", self.inner.take_token(key, rule, now))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.timed("delete", self.inner.delete(key)).await
    }

    async fn health(&self) -> Result<(), StateError> {
        self.timed("health", self.inner.health()).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}
