-- wrk script: POST /api/meetings/{id}/chats, round-robin over the tokens
-- in $HUDDLE_BENCH_TOKENS_FILE (one per line), meeting $HUDDLE_BENCH_MEETING.
-- Counts answers by status so a run full of errors is not read as speed.

local tokens = {}
local meeting = os.getenv("HUDDLE_BENCH_MEETING")
local counter = 0
local statuses = {}

local function load_tokens()
  for line in io.lines(os.getenv("HUDDLE_BENCH_TOKENS_FILE")) do
    if #line > 0 then table.insert(tokens, line) end
  end
end

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  load_tokens()
  n = id * 7919
  path = "/api/meetings/" .. meeting .. "/chats"
  responses = {}
end

function request()
  n = n + 1
  local token = tokens[(n % #tokens) + 1]
  local body = '{"message":"wrk message ' .. n .. '"}'
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  responses[status] = (responses[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("posts: %d in %.1f s = %.0f posts/s; latency p50 %.1f ms, p99 %.1f ms\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
