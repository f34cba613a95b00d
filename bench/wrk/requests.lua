-- Generic wrk driver for the Relais benchmark.
--
-- Reads the requests of one scenario from the file named by BENCH_REQUESTS, one per line:
--   METHOD <TAB> PATH [<TAB> BODY]
-- (BODY is minified JSON, so it holds no raw tab or newline). Requests are sent in file
-- order, each thread starting at its own offset. A body containing {{n}} gets a value
-- unique to the run, thread and request there, so every write carries a distinct body.
--
-- Environment: BENCH_AUTH (bearer token, optional), BENCH_SALT (unique per run),
-- BENCH_THREADS (wrk's -t), BENCH_CONTENT_TYPE (default application/fhir+json).
-- At the end one line "BENCH_JSON {...}" carries the figures the harness parses.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local reqs = {}
local position = 0
local sent = 0
local salt = ""
statuses = {}

function init(args)
  salt = os.getenv("BENCH_SALT") or "0"
  local content_type = os.getenv("BENCH_CONTENT_TYPE") or "application/fhir+json"
  local token = os.getenv("BENCH_AUTH") or ""
  local path = os.getenv("BENCH_REQUESTS")
  local base_headers = { ["Accept"] = "application/fhir+json" }
  if token ~= "" then
    base_headers["Authorization"] = "Bearer " .. token
  end
  local with_body = { ["Content-Type"] = content_type }
  for k, v in pairs(base_headers) do
    with_body[k] = v
  end
  for line in io.lines(path) do
    local method, target, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    if method then
      local r = { method = method, path = target }
      if body ~= nil and body ~= "" then
        r.body = body
        r.headers = with_body
        if body:find("{{n}}", 1, true) then
          r.template = true
        else
          r.raw = wrk.format(method, target, with_body, body)
        end
      else
        r.raw = wrk.format(method, target, base_headers, nil)
      end
      table.insert(reqs, r)
    end
  end
  if #reqs == 0 then
    error("no request in " .. tostring(path))
  end
  -- spread the threads over the list
  local total = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
  position = math.floor(#reqs * thread_index / math.max(1, total))
end

function request()
  position = position % #reqs + 1
  local r = reqs[position]
  if r.raw then
    return r.raw
  end
  sent = sent + 1
  local unique = salt .. "-" .. thread_index .. "-" .. sent
  local body = r.body:gsub("{{n}}", unique)
  return wrk.format(r.method, r.path, r.headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function json_statuses(all)
  local parts = {}
  for code, n in pairs(all) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    if s then
      for code, n in pairs(s) do
        all[code] = (all[code] or 0) + n
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d},"statuses":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), json_statuses(all)))
end
