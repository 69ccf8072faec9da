-- POSTs a form body given in the environment, with the CSRF cookie and token of one session,
-- and reports requests/s and the 50th and 95th percentiles of latency.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = os.getenv("WRK_COOKIE") or ""
wrk.headers["Referer"] = os.getenv("WRK_REFERER") or ""

local counter = 0
request = function()
  counter = counter + 1
  -- A different address each time, so that the per-address limit is not what is measured.
  local body = string.gsub(wrk.body, "EMAILN", "load" .. counter .. "-" .. math.random(1, 1e9))
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d rps=%.1f p50_ms=%.1f p95_ms=%.1f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(95) / 1000))
end
