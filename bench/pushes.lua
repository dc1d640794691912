-- wrk script for bench/ingest: replays pre-signed unique pushes from a file, one per request.
-- The file holds two lines per push: the X-Dt-Signature token, then the exact body bytes.
local pushes = {}
local next_index = 1

function init(args)
  local file = assert(io.open(args[1], "rb"))
  while true do
    local token = file:read("*l")
    local body = file:read("*l")
    if not token or not body then break end
    pushes[#pushes + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["X-Dt-Signature"] = token,
    }, body)
  end
  file:close()
end

function request()
  local req = pushes[next_index]
  next_index = next_index + 1
  if next_index > #pushes then next_index = 1 end
  return req
end

function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
