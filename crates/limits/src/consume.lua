-- Consume one slot on every counter of a call, or on none (DESIGN.md §4). Mirrors window.rs.
--
-- Each counter is two keys that share the organisation's hash tag:
--   KEYS[2i-1]  a hash: field `n` = admissions still counted, field <quantum> = admissions in it
--   KEYS[2i]    a sorted set of the quanta held (member and score = quantum number), for trimming
-- ARGV[2i-1] is counter i's window in seconds, which is also its quantum in milliseconds;
-- ARGV[2i] is its max.
--
-- Returns {1, now_ms} when every counter admitted the call (one slot taken on each), or
-- {0, index, retry_after_ms, now_ms} when counter `index` (0-based; the one that stays full
-- longest) refused it, and nothing was taken.
--
-- Time is this server's clock, so every replica agrees whatever its own clock says. Numbers are
-- written with %.0f: they are whole milliseconds far below 2^53, and Lua's default formatting
-- would switch to exponents.

local function int(x) return string.format('%.0f', x) end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local counters = #KEYS / 2
local refused, longest = -1, 0

for i = 1, counters do
  local counts, quanta = KEYS[2 * i - 1], KEYS[2 * i]
  local quantum = tonumber(ARGV[2 * i - 1])
  local window = quantum * 1000
  local max = tonumber(ARGV[2 * i])

  -- Forget the quanta that have left the window.
  local oldest_live = math.floor(math.max(now + 1 - window, 0) / quantum)
  local n = tonumber(redis.call('HGET', counts, 'n')) or 0
  local gone = redis.call('ZRANGEBYSCORE', quanta, '-inf', '(' .. int(oldest_live))
  if #gone > 0 then
    local c = redis.call('HMGET', counts, unpack(gone))
    for j = 1, #c do n = n - (tonumber(c[j]) or 0) end
    redis.call('HDEL', counts, unpack(gone))
    redis.call('ZREMRANGEBYSCORE', quanta, '-inf', '(' .. int(oldest_live))
    if n > 0 then
      redis.call('HSET', counts, 'n', int(n))
    else
      n = 0
      redis.call('DEL', counts, quanta)
    end
  end

  if n >= max then
    -- Full: find when enough of the oldest quanta will have left to make room for one call.
    local need, freed, cursor = n - max + 1, 0, 0
    local wait = window + quantum -- only if the counts disagree with `n`: a whole window, to be safe
    while freed < need do
      local chunk = redis.call('ZRANGE', quanta, cursor, cursor + 63)
      if #chunk == 0 then break end
      local c = redis.call('HMGET', counts, unpack(chunk))
      for j = 1, #chunk do
        freed = freed + (tonumber(c[j]) or 0)
        if freed >= need then
          wait = math.max((tonumber(chunk[j]) + 1) * quantum + window - 1 - now, 1)
          break
        end
      end
      cursor = cursor + 64
    end
    if wait > longest then refused, longest = i - 1, wait end
  end
end

if refused >= 0 then return {0, refused, longest, now} end

for i = 1, counters do
  local counts, quanta = KEYS[2 * i - 1], KEYS[2 * i]
  local quantum = tonumber(ARGV[2 * i - 1])
  local q = int(math.floor(now / quantum))
  redis.call('HINCRBY', counts, q, 1)
  redis.call('HINCRBY', counts, 'n', 1)
  redis.call('ZADD', quanta, q, q)
  -- The newest quantum is live until its end plus a window: then the counter may vanish.
  local ttl = int(quantum * 1000 + quantum)
  redis.call('PEXPIRE', counts, ttl)
  redis.call('PEXPIRE', quanta, ttl)
end
return {1, now}
