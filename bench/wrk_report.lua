-- Reports requests/s, the 50th and 95th percentiles and the slowest of latency of plain GETs, and the
-- errors: answers of 400 and over, and requests that failed or timed out.
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d timeouts=%d rps=%.1f p50_ms=%.1f p95_ms=%.1f max_ms=%.1f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency.max / 1000))
end
