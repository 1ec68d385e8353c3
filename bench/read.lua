-- wrk script for bench/sealing.py: GET one stored record per call, a random one of the
-- BENCH_COUNT records "0A" + 15 digits, through the records API.
--
-- Environment: BENCH_AUTH (the Authorization header), BENCH_COUNT (records stored).
-- done() prints one line "BENCH_RESULT {json}".

wrk.method = "GET"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
local count = tonumber(os.getenv("BENCH_COUNT"))

function setup(thread)
   thread:set("seed", math.random(1, 1000000))
end

function init(args)
   math.randomseed(seed)
end

function request()
   local path = string.format("/v1/redact/records/0A%015d?product=sms&type=outbound",
                              math.random(0, count - 1))
   return wrk.format(nil, path)
end

function done(summary, latency, requests)
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, ' ..
      '"socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
      summary.requests, summary.duration, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
