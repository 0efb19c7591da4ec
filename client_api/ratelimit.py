"""Per-key token bucket in Redis (one Lua script: shared by every API process, race-free)."""
from __future__ import annotations

from redis.asyncio import Redis

# tokens refill continuously at `rate` per second up to `capacity`; one request costs one.
# Redis's own clock is used so API hosts with skewed clocks still agree.
_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or capacity
local ts = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate)
local allowed = 0
local retry_after = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_after = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(retry_after)}
"""


class RateLimiter:
    def __init__(self, redis: Redis, per_minute: int, burst: int | None = None):
        self.rate = per_minute / 60.0
        self.capacity = burst or per_minute
        self._script = redis.register_script(_BUCKET)

    async def hit(self, owner: str) -> float | None:
        """None if allowed, else the seconds to wait before the next request can pass."""
        allowed, retry_after = await self._script(keys=[f"ratelimit:{owner}"],
                                                  args=[self.capacity, self.rate])
        return None if int(allowed) else float(retry_after)
