//! The Redis [`StateStore`]: several fedsts instances pointing at one Redis share replay marks,
//! lockout counters and rate buckets. Uses the tokio `ConnectionManager`, connected lazily and
//! reconnecting by itself; every command has a short timeout so that a Redis outage turns into a
//! quick fail-closed answer rather than a hanging request.
//!
//! Keys expire by Redis's clock (`PX`); compare-and-swap, the attempt counter and the token
//! bucket are Lua scripts, each atomic in Redis (the counter's window and the bucket's refill
//! run by the caller's clock, like the memory store's).

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use time::{Duration, OffsetDateTime};

use super::{
    AttemptCount, AttemptCounter, AttemptRule, StateError, StateStore, TokenBucket, TokenRule,
    TokenTake, unix_ms,
};

/// Time allowed for connecting and for each command.
const COMMAND_TIMEOUT: StdDuration = StdDuration::from_millis(500);

/// `KEYS[1]` key; `ARGV` = expect-present flag, expected value, new value, TTL in ms.
const COMPARE_AND_SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
";

/// [`crate::state::AttemptCounter::count`] in one script: `KEYS[1]` counter (`"ATTEMPTS LAST"`);
/// `ARGV` = limit, window s, TTL ms, refuse-when-locked flag, now (Unix s). Returns
/// {counted, was_locked, attempts, last}.
const COUNT_ATTEMPT: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[5])
local attempts, last = 0, nil
local current = redis.call('GET', KEYS[1])
if current then
  local a, l = string.match(current, '^(%d+) (%-?%d+)$')
  if a then attempts, last = tonumber(a), tonumber(l) end
end
local locked = attempts >= limit and last ~= nil and now < last + window
if locked and ARGV[4] == '1' then
  return {0, 1, attempts, last}
end
local stale = last == nil or now >= last + window
if stale and attempts < limit then attempts = 1 else attempts = attempts + 1 end
redis.call('SET', KEYS[1], attempts .. ' ' .. now, 'PX', ARGV[3])
return {1, locked and 1 or 0, attempts, now}
";

/// [`crate::state::TokenBucket::take`] in one script: `KEYS[1]` bucket (`"MILLI_TOKENS:AT_MS"`);
/// `ARGV` = capacity (milli-tokens), tokens per minute, TTL ms, now (Unix ms). Returns
/// {taken, milli_tokens, at_ms}. Elapsed time past a full refill is cut off, so every number
/// stays below 2^53 and Lua's doubles hold it exactly.
const TAKE_TOKEN: &str = r"
local capacity = tonumber(ARGV[1])
local per_minute = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local tokens, at = capacity, now
local current = redis.call('GET', KEYS[1])
if current then
  local t, a = string.match(current, '^(%d+):(%-?%d+)$')
  if t then
    tokens, at = tonumber(t), tonumber(a)
    local elapsed = math.max(now - at, 0)
    local full_after = math.ceil(capacity * 60 / per_minute)
    local scaled = math.min(elapsed, full_after) * per_minute
    local gained = (scaled - scaled % 60) / 60
    tokens = math.min(tokens + gained, capacity)
    at = math.max(now, at)
  end
end
if tokens < 1000 then
  return {0, tokens, at}
end
tokens = tokens - 1000
redis.call('SET', KEYS[1], string.format('%d:%d', tokens, at), 'PX', ARGV[3])
return {1, tokens, at}
";

/// Gives one attempt back (removing a counter that reaches 0): `KEYS[1]` counter; `ARGV[1]`
/// TTL ms.
const GIVE_BACK_ATTEMPT: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local a, l = string.match(current, '^(%d+) (%-?%d+)$')
if not a then return 0 end
local attempts = tonumber(a) - 1
if attempts <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], attempts .. ' ' .. l, 'PX', ARGV[1])
end
return 1
";

/// A store in Redis.
#[derive(Clone)]
pub struct RedisStore {
    prefix: String,
    manager: ConnectionManager,
    script: redis::Script,
    count_attempt: redis::Script,
    give_back_attempt: redis::Script,
    take_token: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StateError {
    StateError::Unavailable(e.to_string())
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.whole_milliseconds()).unwrap_or(1).max(1)
}

impl RedisStore {
    /// A store at `url` (not yet connected); must be called inside a tokio runtime.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StateError> {
        let client = redis::Client::open(url).map_err(|e| StateError::Config(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(StdDuration::from_millis(200));
        let manager = client
            .get_connection_manager_lazy(config)
            .map_err(|e| StateError::Config(e.to_string()))?;
        Ok(Self {
            prefix: prefix.to_owned(),
            manager,
            script: redis::Script::new(COMPARE_AND_SWAP),
            count_attempt: redis::Script::new(COUNT_ATTEMPT),
            give_back_attempt: redis::Script::new(GIVE_BACK_ATTEMPT),
            take_token: redis::Script::new(TAKE_TOKEN),
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        _now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        let mut conn = self.manager.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.full_key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(reply.is_some())
    }

    async fn get(&self, key: &str, _now: OffsetDateTime) -> Result<Option<String>, StateError> {
        let mut conn = self.manager.clone();
        redis::cmd("GET")
            .arg(self.full_key(key))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl: Duration,
        _now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        let mut conn = self.manager.clone();
        let swapped: i64 = self
            .script
            .key(self.full_key(key))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or(""))
            .arg(new)
            .arg(ttl_millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(swapped == 1)
    }

    async fn count_attempt(
        &self,
        key: &str,
        rule: &AttemptRule,
        now: OffsetDateTime,
    ) -> Result<AttemptCount, StateError> {
        let mut conn = self.manager.clone();
        let (counted, was_locked, attempts, last): (i64, i64, u32, i64) = self
            .count_attempt
            .key(self.full_key(key))
            .arg(rule.limit)
            .arg(rule.window.whole_seconds())
            .arg(ttl_millis(rule.ttl))
            .arg(if rule.refuse_when_locked { "1" } else { "0" })
            .arg(now.unix_timestamp())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(AttemptCount {
            counted: counted == 1,
            was_locked: was_locked == 1,
            counter: AttemptCounter {
                attempts,
                last: Some(last),
            },
        })
    }

    async fn give_back_attempt(
        &self,
        key: &str,
        ttl: Duration,
        _now: OffsetDateTime,
    ) -> Result<(), StateError> {
        let mut conn = self.manager.clone();
        let _given: i64 = self
            .give_back_attempt
            .key(self.full_key(key))
            .arg(ttl_millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_token(
        &self,
        key: &str,
        rule: &TokenRule,
        now: OffsetDateTime,
    ) -> Result<TokenTake, StateError> {
        let mut conn = self.manager.clone();
        let (taken, milli_tokens, at_ms): (i64, u64, i64) = self
            .take_token
            .key(self.full_key(key))
            .arg(rule.capacity_millis())
            .arg(rule.per_minute)
            .arg(ttl_millis(rule.ttl))
            .arg(unix_ms(now))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(TokenTake {
            taken: taken == 1,
            bucket: TokenBucket {
                milli_tokens,
                at_ms,
            },
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        let mut conn = self.manager.clone();
        let _removed: i64 = redis::cmd("DEL")
            .arg(self.full_key(key))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn health(&self) -> Result<(), StateError> {
        let mut conn = self.manager.clone();
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StateError::Unavailable(format!("PING answered {pong}")))
        }
    }

    fn is_shared(&self) -> bool {
        true
    }
}
