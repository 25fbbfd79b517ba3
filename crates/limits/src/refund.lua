-- Give back the slots of one admitted call that never reached the upstream. Mirrors window.rs.
--
-- KEYS as in consume.lua (two per counter). ARGV[1] is the admission time in milliseconds that
-- consume.lua returned; ARGV[1+i] is counter i's window in seconds (= its quantum in ms).
-- A quantum no longer held (left the window, or the key expired) is not touched, so a refund can
-- never free a slot that some other call holds. Returns how many counters gave a slot back.

local at = tonumber(ARGV[1])
local given = 0
for i = 1, #KEYS / 2 do
  local counts, quanta = KEYS[2 * i - 1], KEYS[2 * i]
  local q = string.format('%.0f', math.floor(at / tonumber(ARGV[1 + i])))
  local c = tonumber(redis.call('HGET', counts, q)) or 0
  if c > 0 then
    if c == 1 then
      redis.call('HDEL', counts, q)
      redis.call('ZREM', quanta, q)
    else
      redis.call('HINCRBY', counts, q, -1)
    end
    if redis.call('HINCRBY', counts, 'n', -1) <= 0 then
      redis.call('DEL', counts, quanta)
    end
    given = given + 1
  end
end
return given
