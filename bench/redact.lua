-- wrk script for bench/run.py: POST one Redact request per call, each for a record id
-- never sent before in this run.
--
-- Environment (set by run.py):
--   BENCH_AUTH        value of the Authorization header
--   BENCH_FIRST       number of the first id of this run
--   BENCH_PER_THREAD  ids reserved for each wrk thread (thread k uses
--                     FIRST + k*PER_THREAD .. FIRST + (k+1)*PER_THREAD - 1)
-- An id is "0A" followed by the number on 15 digits, as run.py inserts them.
-- done() prints one line "BENCH_RESULT {json}" that run.py reads.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

local first_id = tonumber(os.getenv("BENCH_FIRST"))
local per_thread = tonumber(os.getenv("BENCH_PER_THREAD"))
local threads = {}

function setup(thread)
   thread:set("first", first_id + #threads * per_thread)
   thread:set("sent", 0)
   table.insert(threads, thread)
end

function request()
   local body = string.format('{"id": "0A%015d", "product": "sms", "type": "outbound"}',
                              first + sent)
   sent = sent + 1
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   local most_sent = 0
   for _, thread in ipairs(threads) do
      most_sent = math.max(most_sent, thread:get("sent"))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, ' ..
      '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
      '"p50_us": %d, "p99_us": %d, "most_ids_per_thread": %d}\n',
      summary.requests, summary.duration, errors.status,
      errors.connect, errors.read, errors.write, errors.timeout,
      latency:percentile(50), latency:percentile(99), most_sent))
end
