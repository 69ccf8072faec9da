-- POSTs a form body given in the environment, with the CSRF cookie and token of one session,
-- and reports as bench/wrk_report.lua does.
dofile("bench/wrk_report.lua")
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
