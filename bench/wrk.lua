-- wrk script for bench/load.sh: sets the credential, counts status codes and the requests sent
-- with each credential, prints one RESULT line.
--
-- wrk ... -s bench/wrk.lua <url> -- <mode> <credentials file> <label>
--   mode: none | bearer:<name> | token:<name> | mixed
--   bearer:<name> sends "Authorization: Bearer <value of name>" from the credentials
--   file (name=value lines, written by bench/load_fixtures.py); token:<name> sends
--   "Token <value>" (DRF's scheme); mixed rotates the valid, revoked and garbage keys.
-- Credentials are read from the file, never from the command line, and never printed.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function read_credentials(path)
  local values = {}
  for line in io.lines(path) do
    local name, value = line:match("^([%w_]+)=(.*)$")
    if name then values[name] = value end
  end
  return values
end

local headers_cycle = {}
local names = {}  -- the credential name of each entry of headers_cycle ("" for none)
local turn = 0
counts = {}
sent = {}  -- requests generated per credential name: answered, or in flight at the stop

function init(args)
  local mode, path = args[1], args[2]
  local creds = read_credentials(path)
  if mode == "none" then
    headers_cycle, names = { {} }, { "" }
  elseif mode == "mixed" then
    for _, name in ipairs({ "valid", "revoked", "garbage" }) do
      table.insert(headers_cycle, { ["Authorization"] = "Bearer " .. creds[name] })
      table.insert(names, name)
    end
  else
    local scheme, name = mode:match("^(%a+):([%w_]+)$")
    local prefix = scheme == "token" and "Token " or "Bearer "
    headers_cycle, names = { { ["Authorization"] = prefix .. creds[name] } }, { name }
  end
end

function request()
  turn = turn % #headers_cycle + 1
  sent[names[turn]] = (sent[names[turn]] or 0) + 1
  return wrk.format("GET", nil, headers_cycle[turn])
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

-- A JSON object of one per-thread table (`counts` or `sent`) added up over the threads.
local function json_totals(global)
  local totals = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get(global)) do
      totals[key] = (totals[key] or 0) + n
    end
  end
  local parts = {}
  for key, n in pairs(totals) do
    if key ~= "" then table.insert(parts, string.format('"%s": %d', key, n)) end
  end
  table.sort(parts)
  return table.concat(parts, ", ")
end

function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.2f, "rps": %.1f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"socket_errors": %d, "statuses": {%s}, "sent": {%s}}\n',
    summary.requests,
    summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    json_totals("counts"),
    json_totals("sent")
  ))
end
