-- Consume one slot on every counter of a call, or on none (DESIGN.md §4). The arithmetic is
-- window.rs's; read that first.
--
-- Each counter is two keys that share the organisation's hash tag:
--   KEYS[2i-1]  a hash: field `n` = admissions held, field <quantum> = admissions in that quantum
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
--
-- Quanta that left the window are trimmed lazily, which decides exactly as trimming on every
-- call would: `n` never counts fewer than the live admissions, so `n < max` admits correctly
-- without trimming, and a counter that looks full is trimmed before it refuses. Trimming also
-- runs whenever a call opens a new quantum, so a counter never holds more than 1,001 + 1 quanta.

local function int(x) return string.format('%.0f', x) end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local counters = #KEYS / 2

-- Forgets the quanta before `oldest_live`; returns the admissions still held, or nil if none
-- were forgotten.
local function trim(counts, quanta, oldest_live)
  local gone = redis.call('ZRANGEBYSCORE', quanta, '-inf', '(' .. int(oldest_live))
  if #gone == 0 then return nil end
  local c = redis.call('HMGET', counts, unpack(gone))
  local freed = 0
  for j = 1, #c do freed = freed + (tonumber(c[j]) or 0) end
  redis.call('HDEL', counts, unpack(gone))
  redis.call('ZREMRANGEBYSCORE', quanta, '-inf', '(' .. int(oldest_live))
  local n = redis.call('HINCRBY', counts, 'n', -freed)
  if n <= 0 then
    redis.call('DEL', counts, quanta)
    return 0
  end
  return n
end

local function oldest_live(quantum)
  return math.floor(math.max(now + 1 - quantum * 1000, 0) / quantum)
end

local refused, longest = -1, 0
for i = 1, counters do
  local counts, quanta = KEYS[2 * i - 1], KEYS[2 * i]
  local quantum = tonumber(ARGV[2 * i - 1])
  local window = quantum * 1000
  local max = tonumber(ARGV[2 * i])
  local n = tonumber(redis.call('HGET', counts, 'n')) or 0
  if n >= max then
    n = trim(counts, quanta, oldest_live(quantum)) or n
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
  redis.call('HINCRBY', counts, 'n', 1)
  if redis.call('HINCRBY', counts, q, 1) == 1 then
    -- A new quantum: index it, forget the quanta that left the window, and keep the counter
    -- until this quantum has left too (its end plus a window: at most a window and a quantum
    -- from now). Admissions into an existing quantum need none of this.
    redis.call('ZADD', quanta, q, q)
    trim(counts, quanta, oldest_live(quantum))
    local ttl = int(quantum * 1000 + quantum)
    redis.call('PEXPIRE', counts, ttl)
    redis.call('PEXPIRE', quanta, ttl)
  end
end
return {1, now}
